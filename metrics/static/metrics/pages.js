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
    const cardList = [
      { title: "Nodes", value: `${cluster.nodes_reporting} / ${cluster.nodes}`, detail: cluster.nodes - cluster.nodes_reporting ? `${cluster.nodes - cluster.nodes_reporting} not reporting` : "all reporting" },
      { title: "Pods", value: String(cluster.pods), detail: "seen in the last 5 minutes" },
      ...usageCards(cluster),
    ];
    if (data.summaryApi) {
      // /api/summary/: its numbers and small breakdowns (pods by phase, alerts by severity) as cards.
      const summary = await KM.getJSON(data.summaryApi);
      for (const [k, v] of Object.entries(summary)) {
        if (v && typeof v === "object" && !Array.isArray(v) && Object.values(v).every((n) => typeof n === "number")) {
          cardList.push({ title: k.replace(/_/g, " "), value: String(Object.values(v).reduce((a, b) => a + b, 0)), detail: Object.entries(v).map(([a, b]) => `${a} ${b}`).join(", ") });
        }
      }
    }
    KM.cards(document.getElementById("cards"), cardList);
    if (data.alertsApi) {
      const alerts = await KM.getJSON(data.alertsApi);
      document.getElementById("alerts").replaceChildren(genericTable(alerts, "Nothing is firing."));
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
      // Right-sizing looks back a whole number of seconds from now, at least an hour (its
      // percentiles need that much data): the page's window, widened to an hour when shorter.
      const s = KM.state();
      const seconds = s.start ? (Date.parse(s.end || new Date().toISOString()) - Date.parse(s.start)) / 1000 : Number(s.window);
      const lookback = Math.min(30 * 86400, Math.max(3600, Math.round(seconds) || 3600));
      const advice = await KM.getJSON(`${data.rightsizingApi}?window=${lookback}`);
      document.getElementById("rightsizing").replaceChildren(genericTable(advice, "No recommendation yet."));
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

  // A list answer of an API this page does not know the shape of: its scalar fields as columns.
  function genericTable(body, empty) {
    const rows = Array.isArray(body) ? body : Array.isArray(body.results) ? body.results : [body];
    const keys = rows.length ? Object.keys(rows[0]).filter((k) => rows[0][k] === null || typeof rows[0][k] !== "object") : [];
    return table(keys.map((k) => ({ title: k.replace(/_/g, " "), cell: (r) => (r[k] === null || r[k] === undefined ? "–" : String(r[k])) })), rows, empty);
  }

  async function optional() {
    const body = await KM.getJSON(withWindow(data.api));
    document.getElementById("rows").replaceChildren(genericTable(body, data.empty));
  }

  const pages = { overview, nodes, namespaces, node, namespace, deployment, pod, pods: null, optional };
  KM.start(pages[data.page] || null);
})();
