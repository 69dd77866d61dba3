// What each dashboard page draws (body[data-page]); the shared machinery is KM in core.js.
"use strict";

(() => {
  const { el, link, fmt, table } = KM;
  const data = document.body.dataset;
  const NO_DATA = "No node has reported yet. Start a collector on a node (README, \"Run it\"), or load demo data with manage.py loaddemo.";

  const page = (path) => KM.carryState(path);
  const nodeHref = (name) => page(`/nodes/${encodeURIComponent(name)}/`);
  const nsHref = (name) => page(`/namespaces/${encodeURIComponent(name)}/`);
  const depHref = (ns, name) => page(`/namespaces/${encodeURIComponent(ns)}/deployments/${encodeURIComponent(name)}/`);
  const withWindow = (url) => `${url}${url.includes("?") ? "&" : "?"}${KM.seriesQuery()}`;
  const u = (item) => item.usage || {};
  // The node's capacity, left out of a pod's usage charts (its % of capacity is still charted).
  const CAPACITY = /_capacity_(millicores|bytes)$/;

  // Fields other parts of kubemonitor may add to an answer (phase, restarts, requests, GPUs):
  // shown when present, so the page needs no change when they land.
  function extraFacts(obj, known) {
    return Object.entries(obj)
      .filter(([k, v]) => !known.includes(k) && v !== null && (typeof v !== "object"))
      .map(([k, v]) => [k.replace(/_/g, " "), String(v)]);
  }

  function facts(container, pairs) {
    container.replaceChildren(el("dl", { class: "facts" }, ...pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
  }

  function usageCards(item, extra = []) {
    const x = u(item);
    const list = [...extra];
    list.push({ title: "CPU", value: fmt(x.cpu_millicores, "millicores"), detail: x.cpu_percent_of_capacity != null ? `of ${fmt(x.cpu_capacity_millicores, "millicores")}` : x.cpu_limit_millicores != null ? `limit ${fmt(x.cpu_limit_millicores, "millicores")}` : null, percent: x.cpu_percent_of_capacity ?? x.cpu_percent_of_limit ?? undefined });
    list.push({ title: "Memory", value: fmt(x.memory_working_set_bytes, "bytes"), detail: x.memory_percent_of_capacity != null ? `of ${fmt(x.memory_capacity_bytes, "bytes")}` : x.memory_limit_bytes != null ? `limit ${fmt(x.memory_limit_bytes, "bytes")}` : null, percent: x.memory_percent_of_capacity ?? x.memory_percent_of_limit ?? undefined });
    // GPU fields, once the series carry them (named gpu_*).
    for (const p of KM.points.filter((q) => q.name.startsWith("gpu_"))) {
      if (x[p.name] !== null && x[p.name] !== undefined) list.push({ title: p.name.replace(/_/g, " "), value: fmt(x[p.name], p.unit) });
    }
    return list;
  }

  function usageColumns() {
    return [
      { title: "CPU", num: true, cell: (r) => fmt(u(r).cpu_millicores, "millicores") },
      { title: "Memory", num: true, cell: (r) => fmt(u(r).memory_working_set_bytes, "bytes") },
    ];
  }

  const byCpu = (a, b) => (u(b).cpu_millicores ?? -1) - (u(a).cpu_millicores ?? -1);

  // --- pages ----------------------------------------------------------------------------------
  async function overview() {
    const cluster = await KM.getJSON(withWindow(data.api));
    let cardList;
    if (data.summaryApi) {
      const summary = await KM.getJSON(data.summaryApi);
      cardList = summaryCards(summary, cluster.name);
    } else {
      cardList = [
        { title: "Nodes", value: `${cluster.nodes_reporting} / ${cluster.nodes}`, detail: cluster.nodes - cluster.nodes_reporting ? `${cluster.nodes - cluster.nodes_reporting} not reporting` : "all reporting" },
        { title: "Pods", value: String(cluster.pods), detail: "seen in the last 5 minutes" },
        ...usageCards(cluster),
      ];
    }
    KM.cards(document.getElementById("cards"), cardList);
    if (data.alertsApi) {
      // Firing only: a pending alert has not held for its rule's `for` yet (the alerts view lists both).
      const firing = await KM.getAll(`${data.alertsApi}?state=firing`);
      document.getElementById("alerts").replaceChildren(alertsTable(firing, false, "Nothing is firing."));
    }
    const charts = document.getElementById("charts");
    if (!cluster.nodes) charts.replaceChildren(el("p", { class: "empty" }, NO_DATA));
    else KM.seriesCharts(charts, cluster.series, ["cpu", "memory", "gpu", "percent"]);
    const [deployments, namespaces] = await Promise.all([KM.getAll("/api/deployments/"), KM.getAll("/api/namespaces/")]);
    document.getElementById("top-deployments").replaceChildren(table([
      { title: "Deployment", cell: (d) => link(d.name, depHref(d.namespace, d.name)) },
      { title: "Namespace", cell: (d) => link(d.namespace, nsHref(d.namespace)) },
      ...usageColumns(),
    ], deployments.sort(byCpu).slice(0, 10), "No Deployments seen yet."));
    document.getElementById("top-namespaces").replaceChildren(table([
      { title: "Namespace", cell: (n) => link(n.name, nsHref(n.name)) },
      { title: "Pods", num: true, cell: (n) => String(n.pods) },
      ...usageColumns(),
    ], namespaces.sort(byCpu), "No namespaces seen yet."));
  }

  async function nodes() {
    const list = await KM.getAll(data.api);
    document.getElementById("nodes").replaceChildren(table([
      { title: "Node", cell: (n) => link(n.name, nodeHref(n.name)) },
      { title: "CPU", num: true, cell: (n) => fmt(u(n).cpu_millicores, "millicores") },
      { title: "of capacity", cell: (n) => KM.meter(el("span"), u(n).cpu_percent_of_capacity ?? null) },
      { title: "Memory", num: true, cell: (n) => fmt(u(n).memory_working_set_bytes, "bytes") },
      { title: "of capacity", cell: (n) => KM.meter(el("span"), u(n).memory_percent_of_capacity ?? null) },
      { title: "Cores", num: true, cell: (n) => String(n.cpu_capacity_cores ?? "–") },
      { title: "Memory total", num: true, cell: (n) => fmt(n.memory_total_bytes, "bytes") },
      { title: "Last seen", cell: (n) => KM.time(n.last_seen) },
    ], list, NO_DATA));
    await manyCharts("node", list.map((n) => n.name).slice(0, 50), null, "nodes");
  }

  async function namespaces() {
    const list = await KM.getAll(data.api);
    document.getElementById("namespaces").replaceChildren(table([
      { title: "Namespace", cell: (n) => link(n.name, nsHref(n.name)) },
      { title: "Pods", num: true, cell: (n) => String(n.pods) },
      { title: "Deployments", num: true, cell: (n) => String(n.deployments) },
      ...usageColumns(),
      { title: "Last seen", cell: (n) => KM.time(n.last_seen) },
    ], list, NO_DATA));
    await manyCharts("namespace", list.map((n) => n.name).slice(0, 50), null, "namespaces");
  }

  async function manyCharts(kind, names, namespace, what) {
    const charts = document.getElementById(data.page === "deployment" ? "pod-charts" : "charts");
    if (!names.length) {
      charts.replaceChildren(el("p", { class: "empty" }, `No ${what} to chart.`));
      return;
    }
    const q = new URLSearchParams(KM.seriesQuery());
    q.set("kind", kind);
    if (namespace) q.set("namespace", namespace);
    for (const n of names) q.append("name", n);
    const body = await KM.getJSON(`/api/series/?${q}`);
    KM.manyChart(charts, `${kind}-cpu`, body, "cpu_millicores", `CPU per ${kind}`);
    KM.manyChart(charts, `${kind}-memory`, body, "memory_working_set_bytes", `Memory per ${kind}`);
  }

  async function node() {
    const n = await KM.getJSON(withWindow(data.api));
    KM.cards(document.getElementById("cards"), [
      ...usageCards(n),
      { title: "Disk", value: fmt(n.fs_capacity_bytes, "bytes"), detail: "filesystem capacity" },
      { title: "Last seen", value: KM.time(n.last_seen), detail: n.collector_info?.version ? `collector ${n.collector_info.version}` : null },
    ]);
    // The node's GPUs (and MIG instances), each with who holds it and its charts; none: nothing.
    const gpus = await KM.getAll(withWindow(data.gpusApi));
    const box = document.getElementById("gpus");
    if (gpus.length) {
      const holder = (g) => (g.pod ? link(`${g.pod.namespace}/${g.pod.name}`, page(`/namespaces/${encodeURIComponent(g.pod.namespace)}/pods/${encodeURIComponent(g.pod.name)}/`)) : "–");
      const sections = gpus.map((g) => {
        const charts = el("div", { class: "charts" });
        const section = el("section", { class: "gpu", "data-gpu": g.uuid }, el("h3", {}, `GPU ${g.index} · ${g.model} `, el("small", { class: "muted" }, g.uuid)), charts);
        return [section, charts, g];
      });
      box.replaceChildren(el("h2", {}, "GPUs"), table([
        { title: "GPU", cell: (g) => `${g.index}${g.mig_instance ? " (MIG)" : ""}` },
        { title: "Model", cell: (g) => g.model },
        { title: "Pod", cell: holder },
        { title: "Utilization", num: true, cell: (g) => fmt(g.usage?.gpu_utilization_percent, "%") },
        { title: "Memory", num: true, cell: (g) => `${fmt(g.usage?.gpu_memory_bytes, "bytes")} of ${fmt(g.memory_total_bytes, "bytes")}` },
        { title: "Power", num: true, cell: (g) => fmt(g.usage?.gpu_power_watts, "W") },
        { title: "Temperature", num: true, cell: (g) => fmt(g.usage?.gpu_temperature_celsius, "°C") },
      ], gpus), ...sections.map(([section]) => section));
      for (const [, charts, g] of sections) if (g.series) KM.seriesCharts(charts, g.series, ["gpu"]);
    } else box.replaceChildren();
    KM.seriesCharts(document.getElementById("charts"), n.series);
  }

  async function namespace() {
    const [ns, deployments] = await Promise.all([KM.getJSON(withWindow(data.api)), KM.getAll(data.deploymentsApi)]);
    KM.cards(document.getElementById("cards"), usageCards(ns, [
      { title: "Pods", value: String(ns.pods), detail: "ever seen" },
      { title: "Deployments", value: String(ns.deployments) },
    ]));
    KM.seriesCharts(document.getElementById("charts"), ns.series);
    document.getElementById("deployments").replaceChildren(table([
      { title: "Deployment", cell: (d) => link(d.name, depHref(d.namespace, d.name)) },
      { title: "Pods", num: true, cell: (d) => String(d.pods) },
      ...usageColumns(),
      { title: "Last seen", cell: (d) => KM.time(d.last_seen) },
    ], deployments, "No Deployment in this namespace (its pods are owned by StatefulSets, DaemonSets, Jobs or nothing)."));
  }

  async function deployment() {
    const d = await KM.getJSON(withWindow(data.api));
    KM.cards(document.getElementById("cards"), usageCards(d, [{ title: "Pods", value: String(d.pods), detail: "ever seen" }]));
    KM.seriesCharts(document.getElementById("charts"), d.series);
    if (data.rightsizingApi) {
      const advice = await KM.getJSON(`${data.rightsizingApi}?window=${sizingWindow()}`);
      const box = document.getElementById("rightsizing");
      if (advice.recommendation) box.replaceChildren(table(sizingColumns(), [advice]), el("p", { class: "muted" }, `Rule: ${advice.rule}`));
      else box.replaceChildren(el("p", { class: "empty" }, advice.no_recommendation_reason || "No recommendation yet."));
    }
    const names = JSON.parse(data.podNames);
    await manyCharts("pod", names, data.namespace, "pods");
  }

  function resourceBars(usage, item) {
    const x = usage || {};
    const cpuLimit = x.cpu_limit_millicores ?? (item.cpu_limit_cores != null ? item.cpu_limit_cores * 1000 : null);
    const memLimit = x.memory_limit_bytes ?? item.memory_limit_bytes ?? null;
    const cpuRequest = item.cpu_request_cores != null ? item.cpu_request_cores * 1000 : (x.cpu_request_millicores ?? null);
    const memRequest = item.memory_request_bytes ?? x.memory_request_bytes ?? null;
    return [
      { title: "CPU", unit: "millicores", used: x.cpu_millicores, request: cpuRequest, limit: cpuLimit },
      { title: "Memory", unit: "bytes", used: x.memory_working_set_bytes, request: memRequest, limit: memLimit },
    ];
  }

  async function pod() {
    // Containers have raw samples only (RETENTION_RAW_DAYS): a longer window gets their newest
    // usage without charts, and says why.
    let containerNote = null;
    let containersOf;
    const s = KM.state();
    const since = s.start ? (Date.now() - Date.parse(s.start)) / 1000 : s.window;
    const rawKept = Number(data.rawRetentionSeconds);
    if (since > rawKept) {
      containerNote = `No container charts for this window: containers have raw samples only, kept ${rawKept / 86400} days (RETENTION_RAW_DAYS). Pick a shorter window.`;
      containersOf = KM.getJSON(data.containersApi);
    } else {
      containersOf = KM.getJSON(withWindow(data.containersApi)).catch((e) => {
        containerNote = `No container charts for this window: ${e.message.replace(/^[^:]*: /, "")}`;
        return KM.getJSON(data.containersApi);
      });
    }
    const [p, containers] = await Promise.all([KM.getJSON(withWindow(data.api)), containersOf]);
    const ooms = (p.series?.points || []).reduce((n, pt) => n + (pt.oom_kills || 0), 0);
    const known = ["url", "name", "namespace", "uid", "node", "owner_kind", "owner_name", "deployment", "qos", "labels", "cpu_limit_cores", "memory_limit_bytes", "first_seen", "last_seen", "usage", "containers", "series"];
    const owner = p.deployment ? link(`Deployment ${p.deployment}`, depHref(p.namespace, p.deployment)) : `${p.owner_kind || "none"} ${p.owner_name || ""}`;
    facts(document.getElementById("facts"), [
      ["Node", link(p.node, nodeHref(p.node))],
      ["Owner", owner],
      ["QoS", p.qos || "–"],
      ["OOM kills in window", String(ooms)],
      ...extraFacts(p, known),
      ["Started", KM.time(p.first_seen)],
      ["Last seen", KM.time(p.last_seen)],
      ["Labels", Object.entries(p.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "–"],
    ]);
    KM.bars(document.getElementById("bars"), resourceBars(p.usage, p));
    KM.seriesCharts(document.getElementById("charts"), p.series, null, CAPACITY);
    const box = document.getElementById("containers");
    if (!containers.length) {
      box.replaceChildren(el("p", { class: "empty" }, "No containers recorded for this pod."));
      return;
    }
    box.querySelector(":scope > p.note")?.remove();
    if (containerNote) box.prepend(el("p", { class: "note" }, containerNote));
    const present = new Set(containers.map((c) => c.name));
    for (const section of box.querySelectorAll(":scope > section")) if (!present.has(section.dataset.container)) section.remove();
    for (const c of containers) {
      let section = box.querySelector(`:scope > section[data-container="${CSS.escape(c.name)}"]`);
      if (!section) {
        section = el("section", { class: "container", "data-container": c.name },
          el("h3", {}, c.name, " ", el("small", { class: "muted" }, c.image)), el("div", { class: "bars" }), el("div", { class: "charts" }));
        box.append(section);
      }
      KM.bars(section.querySelector(".bars"), resourceBars(c.usage, c));
      if (c.series) KM.seriesCharts(section.querySelector(".charts"), c.series, null, CAPACITY);
      else section.querySelector(".charts").replaceChildren();
    }
  }


  // --- summary cards (/api/summary/) ------------------------------------------------------------
  const pct = (v) => (v === null || v === undefined ? null : `${v.toFixed(0)} %`);

  function summaryCards(summary, name) {
    const c = summary.clusters.find((x) => x.name === name) || summary.clusters[0];
    if (!c) return [{ title: "Nodes", value: "0", detail: NO_DATA }];
    const n = c.nodes;
    const out = [{
      key: "nodes", title: "Nodes", value: `${n.reporting} / ${n.total}`, href: page("/nodes/"),
      detail: n.not_reporting ? `not reporting: ${n.not_reporting_names.join(", ")}` : "all reporting",
    }];
    const p = c.pods;
    const phases = Object.entries(p.phases || {}).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`);
    if (p.not_ready) phases.push(`${p.not_ready} not ready`);
    out.push({ key: "pods", title: "Pods", value: String(p.total), href: page("/pods/"), detail: phases.join(" · ") || "seen in the last 5 minutes" });
    if (c.model_servers) {
      const ms = c.model_servers;
      out.push({ key: "model-servers", title: "Model server pods", value: String((ms.vllm || 0) + (ms.sglang || 0)), href: data.modelServersPage ? page(data.modelServersPage) : null, detail: `vLLM ${ms.vllm || 0} · SGLang ${ms.sglang || 0}` });
    }
    const usage = c.usage || {};
    for (const [key, title, unit, suffix] of [["cpu", "CPU", "millicores", "millicores"], ["memory", "Memory", "bytes", "bytes"]]) {
      const x = usage[key];
      if (!x) continue;
      const lines = [`of ${fmt(x[`capacity_${suffix}`], unit)}`];
      // Against requests where the inventory records them (what the scheduler reserves), else limits.
      if (x[`requests_${suffix}`] != null) lines.push(`pods use ${pct(x.pods_percent_of_requests)} of requests (${pct(x.requests_percent_of_capacity)} of capacity requested)`);
      else if (x.pods_percent_of_limits != null) lines.push(`pods use ${pct(x.pods_percent_of_limits)} of limits`);
      out.push({ key, title, value: fmt(x[`used_${suffix}`], unit), detail: lines.join(" · "), percent: x.percent_of_capacity ?? undefined });
    }
    if (usage.gpu) {
      const g = usage.gpu;
      const of = g.gpus ? ` of ${g.gpus} GPU${g.gpus === 1 ? "" : "s"}` : ` on ${g.nodes_with_gpu} node${g.nodes_with_gpu === 1 ? "" : "s"}`;
      out.push({ key: "gpu", title: "GPU", value: fmt(g.utilization_percent_sum, "%"), detail: `busy, summed over GPUs${of} · ${fmt(g.memory_used_bytes, "bytes")} memory`, percent: g.utilization_percent_of_capacity ?? undefined });
    }
    if (summary.alerts) {
      const a = summary.alerts;
      const parts = ["critical", "warning", "info"].filter((k) => a[k]).map((k) => `${a[k]} ${k}`);
      out.push({ key: "alerts", title: "Alerts firing", value: String(a.total), href: data.alertsPage ? page(data.alertsPage) : null, detail: parts.join(" · ") || "nothing is firing" });
    }
    if (summary.clusters.length > 1) out.push({ key: "clusters", title: "Clusters", value: String(summary.clusters.length), detail: `these cards: ${c.name}` });
    out.push({ key: "newest", title: "Newest sample", value: c.newest_sample ? new Date(c.newest_sample).toLocaleTimeString() : "–", detail: c.newest_sample ? new Date(c.newest_sample).toLocaleDateString() : "no sample yet" });
    return out;
  }

  // --- alerts -----------------------------------------------------------------------------------
  const badge = (text, cls) => el("span", { class: `badge ${cls || text}` }, text);
  const podHref = (ns, name) => page(`/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}/`);

  function since(iso) {
    if (!iso) return "–";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    const ago = s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : s < 172800 ? `${(s / 3600).toFixed(1)} h` : `${Math.round(s / 86400)} d`;
    return el("span", { title: KM.time(iso) }, `${ago} ago`);
  }

  function duration(from, to) {
    const s = Math.max(0, (Date.parse(to) - Date.parse(from)) / 1000);
    return s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
  }

  // What the alert is about: the pod (with its namespace), else the node, else its labels.
  function entity(a) {
    const l = a.labels || {};
    if (l.pod && l.namespace) return link(`${l.namespace}/${l.pod}`, podHref(l.namespace, l.pod));
    if (l.deployment && l.namespace) return link(`${l.namespace}/${l.deployment}`, depHref(l.namespace, l.deployment));
    if (l.namespace) return link(l.namespace, nsHref(l.namespace));
    if (l.node) return link(l.node, nodeHref(l.node));
    return Object.entries(l).filter(([k]) => k !== "alertname" && k !== "severity").map(([k, v]) => `${k}=${v}`).join(", ") || "cluster";
  }

  const SEVERITY_ORDER = { critical: 0, warning: 1, info: 2 };
  const STATE_ORDER = { firing: 0, pending: 1, resolved: 2 };

  function alertsTable(list, history, empty) {
    const rows = [...list].sort((a, b) => (STATE_ORDER[a.state] - STATE_ORDER[b.state]) || (SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity]) || Date.parse(b.started_at) - Date.parse(a.started_at));
    const value = (a) => (a.value === null || a.value === undefined ? "–" : `${Number(a.value).toFixed(1)}${a.peak_value !== null && a.peak_value !== a.value ? ` (peak ${Number(a.peak_value).toFixed(1)})` : ""}`);
    const columns = [
      { title: "State", cell: (a) => el("span", {}, badge(a.state), a.silenced ? " silenced" : "") },
      { title: "Severity", cell: (a) => badge(a.severity) },
      { title: "Rule", cell: (a) => a.rule },
      { title: "Entity", cell: entity },
      { title: "Summary", cell: (a) => a.annotations?.summary || "" },
      { title: "Value", num: true, cell: value },
    ];
    if (history) {
      columns.push({ title: "Started", cell: (a) => KM.time(a.started_at) });
      columns.push({ title: "Ended", cell: (a) => (a.ended_at ? since(a.ended_at) : "–") });
      columns.push({ title: "Lasted", num: true, cell: (a) => (a.ended_at ? duration(a.fired_at || a.started_at, a.ended_at) : "–") });
    } else {
      columns.push({ title: "Since", cell: (a) => since(a.state === "firing" ? a.fired_at || a.started_at : a.started_at) });
    }
    const t = table(columns, rows, empty);
    for (const [i, tr] of [...t.querySelectorAll("tbody tr")].entries()) tr.dataset.state = rows[i].state;
    return t;
  }

  async function alerts() {
    const history = data.history === "1";
    const list = await KM.getAll(history ? `${data.api}?state=resolved` : data.api);
    const empty = history ? "No alert has resolved in the last 30 days." : "Nothing is firing or pending. Rules and their state are in the API (/api/alert-rules/) and the admin.";
    document.getElementById("rows").replaceChildren(alertsTable(list, history, empty));
  }

  // --- model servers ------------------------------------------------------------------------------
  const msHref = (m) => page(`/views/model-servers/${encodeURIComponent(m.namespace)}/${encodeURIComponent(m.name)}/${m.kind === "pod" ? "?kind=pod" : ""}`);
  const SERVER_KINDS = { vllm: "vLLM", sglang: "SGLang" };
  const latest = (m) => m.latest || {};

  async function modelServers() {
    const list = await KM.getAll(data.api);
    document.getElementById("rows").replaceChildren(table([
      { title: "Server", cell: (m) => link(m.name, msHref(m)) },
      { title: "Namespace", cell: (m) => link(m.namespace, nsHref(m.namespace)) },
      { title: "Kind", cell: (m) => (m.kind === "deployment" ? "Deployment" : "Pod") },
      { title: "Engine", cell: (m) => SERVER_KINDS[m.model_server] || m.model_server },
      { title: "Model", cell: (m) => m.model_name || "–" },
      { title: "Replicas", num: true, cell: (m) => `${latest(m).replicas_reporting ?? 0} / ${m.replicas}` },
      { title: "Tokens/s", num: true, cell: (m) => el("span", { title: `prompt ${fmt(latest(m).prompt_tokens_per_second, "tokens/s")}` }, fmt(latest(m).generation_tokens_per_second, "tokens/s")) },
      { title: "Running", num: true, cell: (m) => fmt(latest(m).requests_running, "requests") },
      { title: "Waiting", num: true, cell: (m) => fmt(latest(m).requests_waiting, "requests") },
      { title: "KV cache", cell: (m) => KM.meter(el("span"), latest(m).kv_cache_usage_percent ?? null) },
      { title: "TTFT p95", num: true, cell: (m) => fmt(latest(m).ttft_p95_seconds, "s") },
      { title: "GPU", num: true, cell: (m) => (latest(m).gpu_utilization_percent == null ? "–" : `${fmt(latest(m).gpu_utilization_percent, "%")} · ${fmt(latest(m).gpu_memory_bytes, "bytes")}`) },
    ], list, data.empty));
  }

  // The model server's charts: each a few point fields with one unit.
  const SERVING_CHARTS = [
    { key: "tokens", title: "Tokens per second", unit: "tokens/s", fields: [["generation_tokens_per_second", "generation"], ["prompt_tokens_per_second", "prompt"]] },
    { key: "requests", title: "Requests (running and waiting, summed over replicas)", unit: "requests", fields: [["requests_running", "running"], ["requests_waiting", "waiting"]] },
    { key: "rate", title: "Requests completed per second", unit: "requests/s", fields: [["requests_per_second", "succeeded"]] },
    { key: "kv", title: "KV cache usage (%)", unit: "%", fields: [["kv_cache_usage_percent", "KV cache"]] },
    { key: "ttft", title: "Time to first token", unit: "s", fields: [["ttft_p95_seconds", "p95 (highest replica)"], ["ttft_mean_seconds", "mean"]] },
    { key: "e2e", title: "End-to-end latency", unit: "s", fields: [["e2e_p95_seconds", "p95 (highest replica)"], ["e2e_mean_seconds", "mean"]] },
  ];

  // Serving series come from raw samples at any step; the API's default step can be shorter
  // than the collection interval, which leaves most buckets empty and the lines broken. About
  // 200 points per chart, at least a minute per bucket.
  const SERVING_STEPS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400];

  // Serving samples are raw only (no serving rollups yet), kept RETENTION_RAW_DAYS: a window
  // reaching further back shows the days kept, and says so.
  function servingQuery() {
    const st = KM.state();
    const since = st.start ? (Date.now() - Date.parse(st.start)) / 1000 : st.window;
    const kept = Number(data.rawRetentionSeconds);
    const q = new URLSearchParams(since > kept ? { window: String(kept) } : KM.seriesQuery());
    const seconds = st.start && since <= kept ? ((st.end ? Date.parse(st.end) : Date.now()) - Date.parse(st.start)) / 1000 : Math.min(since, kept);
    q.set("step", String(SERVING_STEPS.find((step) => step >= seconds / 200) || 86400));
    const note = since > kept ? `Model servers have raw samples only, kept ${kept / 86400} days (RETENTION_RAW_DAYS): these charts show those days.` : null;
    return [q.toString(), note];
  }

  async function modelServer() {
    const [query, note] = servingQuery();
    const m = await KM.getJSON(`${data.api}${data.api.includes("?") ? "&" : "?"}${query}`);
    const noteBox = document.getElementById("serving-note");
    noteBox.textContent = note || "";
    noteBox.hidden = !note;
    const x = latest(m);
    KM.cards(document.getElementById("cards"), [
      { key: "replicas", title: "Replicas", value: `${x.replicas_reporting ?? 0} / ${m.replicas}`, detail: "reporting / running" },
      { key: "tokens", title: "Tokens/s", value: fmt(x.generation_tokens_per_second, "tokens/s"), detail: `generated; prompt ${fmt(x.prompt_tokens_per_second, "tokens/s")}` },
      { key: "requests", title: "Requests", value: `${fmt(x.requests_running, "requests")} running`, detail: `${fmt(x.requests_waiting, "requests")} waiting · ${fmt(x.requests_per_second, "requests/s")}` },
      { key: "kv", title: "KV cache", value: fmt(x.kv_cache_usage_percent, "%"), percent: x.kv_cache_usage_percent ?? undefined },
      { key: "ttft", title: "TTFT p95", value: fmt(x.ttft_p95_seconds, "s"), detail: `mean ${fmt(x.ttft_mean_seconds, "s")}` },
      { key: "gpu", title: "GPU", value: fmt(x.gpu_utilization_percent, "%"), detail: x.gpu_memory_bytes != null ? `${fmt(x.gpu_memory_bytes, "bytes")} memory` : "no GPU figures" },
    ]);
    const owner = m.kind === "deployment" ? link(`Deployment ${m.name}`, depHref(m.namespace, m.name)) : link(`Pod ${m.name}`, podHref(m.namespace, m.name));
    facts(document.getElementById("facts"), [
      ["Model", m.model_name || "–"],
      ["Engine", SERVER_KINDS[m.model_server] || m.model_server],
      ["Workload", owner],
      ["Pods ever seen", String(m.pods)],
      ["First seen", KM.time(m.first_seen)],
      ["Last seen", KM.time(m.last_seen)],
    ]);
    const charts = document.getElementById("charts");
    const s = m.series;
    const times = s.points.map((p) => Date.parse(p.time) / 1000);
    const coverage = s.points.map((p) => p.coverage);
    for (const c of SERVING_CHARTS) {
      KM.chart(charts, c.key, {
        title: c.title, unit: c.unit, times, step: s.step, coverage,
        series: c.fields.map(([f, label]) => ({ label, values: s.points.map((p) => p[f]) })),
      });
    }
  }

  // --- right-sizing -------------------------------------------------------------------------------
  // The right-sizing API takes a window of 1 hour up to the 1-minute rollups' retention: the
  // picker's window (or custom range's length), clamped to that.
  function sizingWindow() {
    const st = KM.state();
    const seconds = st.start ? ((st.end ? Date.parse(st.end) : Date.now()) - Date.parse(st.start)) / 1000 : st.window;
    return Math.round(Math.min(Number(data.maxWindow) || 2592000, Math.max(3600, seconds)));
  }

  const change = (v, unit) => {
    if (v === null || v === undefined) return "–";
    if (Math.abs(v) < 1e-9) return "no change";
    return el("span", { class: v < 0 ? "frees" : "needs" }, `${v < 0 ? "frees" : "needs"} ${fmt(Math.abs(v), unit)}`);
  };
  const current = (x, unit, suffix) => {
    const request = x[`request_${suffix}`];
    if (request != null) return fmt(request, unit);
    const limit = x[`limit_${suffix}`];
    return limit != null ? `${fmt(limit, unit)} (limit)` : "none";
  };

  function sizingColumns() {
    const r = (d) => d.recommendation || {};
    return [
      { title: "Replicas", num: true, cell: (d) => String(d.replicas) },
      { title: "CPU p95", num: true, cell: (d) => fmt(d.cpu.p95_millicores, "millicores") },
      { title: "CPU request", num: true, cell: (d) => current(d.cpu, "millicores", "millicores") },
      { title: "recommended", num: true, cell: (d) => fmt(r(d).cpu_request_millicores, "millicores") },
      { title: "CPU change", num: true, cell: (d) => change(r(d).cpu_change_millicores, "millicores") },
      { title: "Memory p95", num: true, cell: (d) => fmt(d.memory.p95_bytes, "bytes") },
      { title: "Memory request", num: true, cell: (d) => current(d.memory, "bytes", "bytes") },
      { title: "recommended", num: true, cell: (d) => fmt(r(d).memory_request_bytes, "bytes") },
      { title: "limit", num: true, cell: (d) => fmt(r(d).memory_limit_bytes, "bytes") },
      { title: "Memory change", num: true, cell: (d) => change(r(d).memory_change_bytes, "bytes") },
      { title: "Throttled", num: true, cell: (d) => fmt(d.cpu.throttled_percent, "%") },
      { title: "OOM kills", num: true, cell: (d) => String(d.memory.oom_kills ?? "–") },
    ];
  }

  async function rightsizing() {
    const seconds = sizingWindow();
    const body = await KM.getJSON(`${data.api}?window=${seconds}&limit=200`);
    KM.cards(document.getElementById("cards"), [
      { key: "deployments", title: "Deployments", value: String(body.deployments), detail: `with data in the last ${seconds >= 86400 ? `${(seconds / 86400).toFixed(seconds % 86400 ? 1 : 0)} d` : `${(seconds / 3600).toFixed(seconds % 3600 ? 1 : 0)} h`}` },
      { key: "cpu", title: "CPU freed", value: fmt(body.cpu_freed_millicores, "millicores"), detail: "if every recommendation that frees were applied" },
      { key: "memory", title: "Memory freed", value: fmt(body.memory_freed_bytes, "bytes"), detail: body.requests_recorded ? "from requests (limits where none)" : "from limits: no requests are recorded" },
    ]);
    const columns = [
      { title: "Deployment", cell: (d) => link(d.name, depHref(d.namespace, d.name)) },
      { title: "Namespace", cell: (d) => link(d.namespace, nsHref(d.namespace)) },
      ...sizingColumns(),
    ];
    const t = table(columns, body.results, data.empty);
    for (const [i, tr] of [...t.querySelectorAll("tbody tr")].entries()) if (!body.results[i].recommendation) tr.title = body.results[i].no_recommendation_reason || "";
    document.getElementById("rows").replaceChildren(t);
    document.getElementById("rule").textContent = `Rule: ${body.rule}`;
  }

  const pages = { overview, nodes, namespaces, node, namespace, deployment, pod, pods: null, alerts, rightsizing, "model-servers": modelServers, "model-server": modelServer };
  KM.start(pages[data.page] || null);
})();
