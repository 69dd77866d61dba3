// What every dashboard page shares: the window in the URL, the 30 s refresh with its pause and
// "updated at", units, tables, and uPlot charts with axes, tooltips and partial buckets marked.
// The page's own drawing is in pages.js, which calls KM.start(refresh).
"use strict";

const KM = (() => {
  const REFRESH_MS = 30000;
  const points = JSON.parse(document.body.dataset.points);
  const units = Object.fromEntries(points.map((p) => [p.name, p.unit]));
  const helps = Object.fromEntries(points.map((p) => [p.name, p.help]));
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d"];
  const charts = new Map();
  const specs = new Map(); // figure -> the spec its plot shows now
  let refreshFn = null;
  let timer = null;
  let running = null;

  // --- state in the URL: ?window=seconds or ?start=&end= (RFC 3339), and paused=1 -------------
  function state() {
    const q = new URLSearchParams(location.search);
    if (q.get("start")) return { start: q.get("start"), end: q.get("end") || "", paused: q.get("paused") === "1" };
    const w = parseInt(q.get("window") || "21600", 10);
    return { window: Number.isFinite(w) && w > 0 ? w : 21600, paused: q.get("paused") === "1" };
  }

  function stateParams() {
    const s = state();
    const out = new URLSearchParams();
    if (s.start) {
      out.set("start", s.start);
      if (s.end) out.set("end", s.end);
    } else if (s.window !== 21600) out.set("window", String(s.window));
    if (s.paused) out.set("paused", "1");
    return out;
  }

  function setState(changes) {
    const q = new URLSearchParams(location.search);
    for (const [k, v] of Object.entries(changes)) {
      if (v === null || v === undefined || v === "") q.delete(k);
      else q.set(k, v);
    }
    const text = q.toString();
    history.replaceState(null, "", location.pathname + (text ? `?${text}` : ""));
  }

  // The query string of a series request for the current window.
  function seriesQuery() {
    const s = state();
    const q = new URLSearchParams();
    if (s.start) {
      q.set("start", s.start);
      if (s.end) q.set("end", s.end);
    } else q.set("window", String(s.window));
    return q.toString();
  }

  // Links to other dashboard pages and the filter forms carry the window along.
  function carryState(href) {
    const url = new URL(href, location.href);
    if (url.origin !== location.origin || /^\/(api|admin|static)\//.test(url.pathname)) return href;
    for (const [k, v] of stateParams()) if (!url.searchParams.has(k)) url.searchParams.set(k, v);
    return url.pathname + url.search + url.hash;
  }

  document.addEventListener("click", (event) => {
    const a = event.target.closest("a[href]");
    if (a && !a.hasAttribute("download")) a.setAttribute("href", carryState(a.getAttribute("href")));
  });
  document.addEventListener("submit", (event) => {
    const form = event.target;
    for (const [k, v] of stateParams()) {
      if (form.elements[k]) continue;
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = k;
      input.value = v;
      form.appendChild(input);
    }
  });

  // --- fetching -----------------------------------------------------------------------------
  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) {
      let detail = "";
      try {
        detail = JSON.stringify(await response.json());
      } catch (e) {
        detail = response.statusText;
      }
      throw new Error(`${url}: ${response.status} ${detail}`);
    }
    return response.json();
  }

  // All pages of a cursor-paginated list.
  async function getAll(url) {
    const items = [];
    for (let next = url; next; ) {
      const page = await getJSON(next);
      items.push(...page.results);
      next = page.next;
    }
    return items;
  }

  // --- units --------------------------------------------------------------------------------
  function bytes(v, suffix = "") {
    const steps = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    let x = Math.abs(v);
    while (x >= 1024 && i < steps.length - 1) {
      x /= 1024;
      i += 1;
    }
    const sign = v < 0 ? "-" : "";
    return `${sign}${x >= 100 || i === 0 ? x.toFixed(0) : x.toFixed(1)} ${steps[i]}${suffix}`;
  }

  function fmt(v, unit) {
    if (v === null || v === undefined || v === "" || !Number.isFinite(Number(v))) return "–";
    v = Number(v);
    switch (unit) {
      case "millicores":
        if (Math.abs(v) >= 10000) return `${(v / 1000).toFixed(0)} cores`;
        if (v === 1000) return "1 core";
        if (Math.abs(v) >= 1000) return `${v % 1000 === 0 ? v / 1000 : (v / 1000).toFixed(2)} cores`;
        if (v === 0) return "0";
        return `${v.toFixed(Math.abs(v) < 10 ? 1 : 0)} m`;
      case "bytes":
        return bytes(v);
      case "bytes/s":
        return bytes(v, "/s");
      case "%":
        return `${v.toFixed(1)} %`;
      case "count":
        return String(Math.round(v));
      case "s":
        return Math.abs(v) < 1 ? `${(v * 1000).toFixed(Math.abs(v) < 0.01 ? 1 : 0)} ms` : `${v.toFixed(2)} s`;
      case "tokens/s":
      case "requests/s":
        return `${Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1)} ${unit}`;
      case "requests":
        return `${Math.abs(v) >= 10 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1)}`;
      case "0..1":
        return `${Math.round(v * 100)} %`;
      default:
        return `${Number.isInteger(v) ? v : v.toFixed(2)}${unit ? " " + unit : ""}`;
    }
  }

  function time(iso) {
    return iso ? new Date(iso).toLocaleString() : "–";
  }

  // Server-rendered cells carry raw values; they are formatted here, in the reader's units.
  function formatCells(root = document) {
    for (const td of root.querySelectorAll("[data-unit][data-value]")) td.textContent = fmt(td.dataset.value, td.dataset.unit);
    for (const m of root.querySelectorAll(".meter[data-percent]")) meter(m, m.dataset.percent === "" ? null : Number(m.dataset.percent));
  }

  function meter(el, percent) {
    el.replaceChildren();
    el.classList.add("meter");
    if (percent === null || !Number.isFinite(percent)) {
      el.textContent = "–";
      el.classList.add("none");
      return el;
    }
    const fill = document.createElement("span");
    fill.className = percent >= 90 ? "fill hot" : percent >= 70 ? "fill warm" : "fill";
    fill.style.width = `${Math.min(100, Math.max(0, percent))}%`;
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = `${percent.toFixed(0)} %`;
    el.append(fill, label);
    return el;
  }

  // --- DOM helpers --------------------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function link(text, href) {
    return el("a", { href }, text);
  }

  // columns: [{title, cell(row) -> string | Node, num}]
  function table(columns, rows, empty) {
    if (!rows.length) return el("p", { class: "empty" }, empty || "Nothing to show.");
    const head = el("tr", {}, ...columns.map((c) => el("th", { class: c.num ? "num" : null }, c.title)));
    const body = el("tbody");
    for (const row of rows) {
      body.append(el("tr", {}, ...columns.map((c) => el("td", { class: c.num ? "num" : null }, c.cell(row)))));
    }
    return el("table", { class: "data" }, el("thead", {}, head), body);
  }

  function cards(container, items) {
    container.replaceChildren(
      ...items.map((c) =>
        el(c.href ? "a" : "div", { class: "card", href: c.href, "data-card": c.key }, el("div", { class: "card-title" }, c.title), el("div", { class: "card-value" }, c.value),
          c.detail ? el("div", { class: "card-detail" }, c.detail) : null, c.percent !== undefined ? meter(el("span"), c.percent) : null),
      ),
    );
  }

  // Usage against request and limit: one bar per resource, ticks where the request and the limit are.
  function bars(container, items) {
    const rows = items.filter((i) => i.used !== null && i.used !== undefined);
    if (!rows.length) {
      container.replaceChildren(el("p", { class: "empty" }, "No recent sample: the pod has not reported in the last 5 minutes."));
      return;
    }
    container.replaceChildren(
      ...rows.map((i) => {
        const top = Math.max(i.used, i.request || 0, i.limit || 0) * 1.1 || 1;
        const pct = (v) => `${Math.min(100, (v / top) * 100)}%`;
        const track = el("div", { class: "bar-track" }, el("div", { class: "bar-fill", style: `width:${pct(i.used)}` }));
        const parts = [`${fmt(i.used, i.unit)} used`];
        if (i.request) {
          track.append(el("div", { class: "bar-mark request", style: `left:${pct(i.request)}`, title: "request" }));
          parts.push(`request ${fmt(i.request, i.unit)} (${((i.used / i.request) * 100).toFixed(0)} %)`);
        } else parts.push("no request");
        if (i.limit) {
          track.append(el("div", { class: "bar-mark limit", style: `left:${pct(i.limit)}`, title: "limit" }));
          parts.push(`limit ${fmt(i.limit, i.unit)} (${((i.used / i.limit) * 100).toFixed(0)} %)`);
        } else parts.push("no limit");
        return el("div", { class: "bar", "data-resource": i.title }, el("div", { class: "bar-title" }, i.title), track,
          el("div", { class: "bar-text" }, parts.join(" · ")));
      }),
    );
  }

  // --- charts -------------------------------------------------------------------------------
  const FAMILY_TITLES = { cpu: "CPU", memory: "Memory", disk: "Disk I/O", net: "Network", percent: "Percent of limit and capacity", oom: "OOM kills", gpu: "GPU", psi: "Pressure stall", fs: "Filesystem" };
  // A chart per family and unit; these pairs have a better title than "GPU (W)".
  const GROUP_TITLES = { "gpu|W": "GPU power", "gpu|°C": "GPU temperature", "gpu|%": "GPU utilization and memory", "gpu|bytes": "GPU memory" };

  function family(p) {
    const fam = p.name.split("_")[0];
    // CPU and memory as a share of limit, capacity or CFS periods: one chart.
    if (p.unit === "%" && (fam === "cpu" || fam === "memory")) return "percent";
    return fam;
  }

  // The point fields grouped into charts (one family and unit each), keeping those with data.
  function groups(seriesPoints, families) {
    const out = new Map();
    for (const p of points) {
      if (p.name === "coverage") continue;
      const fam = family(p);
      if (families && !families.includes(fam)) continue;
      if (!seriesPoints.some((pt) => pt[p.name] !== null && pt[p.name] !== undefined)) continue;
      const key = `${fam}|${p.unit}`;
      if (!out.has(key)) {
        const title = GROUP_TITLES[key] || FAMILY_TITLES[fam] || fam.replace(/^\w/, (c) => c.toUpperCase());
        out.set(key, { key, title: `${title} (${p.unit})`, unit: p.unit, fields: [] });
      }
      out.get(key).fields.push(p.name);
    }
    return [...out.values()];
  }

  function label(name) {
    return name.replace(/_/g, " ").replace(/ (bytes|millicores)( per second)?$/, (m, u, ps) => (ps ? " /s" : "")).trim();
  }

  const PARTIAL = 0.999;

  // Buckets that data covers only in part (still filling, data started or stopped in them, a
  // collector gap) are shaded and their points circled, so a dip there is not read as a drop.
  // `current()` is the chart's newest spec: a refresh swaps the data in place (setData).
  function partialPlugin(current) {
    return {
      hooks: {
        draw: (u) => {
          const { coverage, step } = current();
          const ctx = u.ctx;
          ctx.save();
          const top = u.bbox.top;
          const height = u.bbox.height;
          for (let i = 0; i < coverage.length; i++) {
            const c = coverage[i];
            if (c === null || c === undefined || c >= PARTIAL) continue;
            const hasValue = u.series.some((s, si) => si > 0 && s.show && u.data[si][i] !== null && u.data[si][i] !== undefined);
            if (!hasValue) continue;
            const x0 = u.valToPos(u.data[0][i], "x", true);
            const x1 = u.valToPos(u.data[0][i] + step, "x", true);
            ctx.fillStyle = "rgba(148, 163, 184, 0.18)";
            ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
            for (let si = 1; si < u.series.length; si++) {
              const v = u.data[si][i];
              if (!u.series[si].show || v === null || v === undefined) continue;
              ctx.beginPath();
              ctx.strokeStyle = u.series[si].stroke();
              ctx.lineWidth = 1.5 * devicePixelRatio;
              ctx.setLineDash([]);
              ctx.arc(u.valToPos(u.data[0][i], "x", true), u.valToPos(v, "y", true), 3.5 * devicePixelRatio, 0, 2 * Math.PI);
              ctx.fillStyle = "#fff";
              ctx.fill();
              ctx.stroke();
            }
          }
          ctx.restore();
        },
      },
    };
  }

  function tooltipPlugin(current) {
    let tip;
    return {
      hooks: {
        init: (u) => {
          tip = el("div", { class: "km-tip", hidden: "" });
          u.over.appendChild(tip);
        },
        setCursor: (u) => {
          const { unit, coverage } = current();
          const i = u.cursor.idx;
          if (i === null || i === undefined || u.cursor.left < 0) {
            tip.hidden = true;
            return;
          }
          const lines = [el("div", { class: "tip-time" }, new Date(u.data[0][i] * 1000).toLocaleString())];
          for (let si = 1; si < u.series.length; si++) {
            if (!u.series[si].show) continue;
            lines.push(el("div", {}, el("span", { class: "swatch", style: `background:${u.series[si].stroke()}` }), `${u.series[si].label}: ${fmt(u.data[si][i], unit)}`));
          }
          const c = coverage[i];
          if (c !== null && c !== undefined && c < PARTIAL) lines.push(el("div", { class: "tip-partial" }, `partial bucket: ${Math.round(c * 100)} % covered`));
          tip.replaceChildren(...lines);
          tip.hidden = false;
          const left = u.cursor.left + 12;
          tip.style.left = `${Math.min(left, u.over.clientWidth - tip.offsetWidth - 4)}px`;
          tip.style.top = `${Math.max(0, u.cursor.top - tip.offsetHeight - 8)}px`;
        },
      },
    };
  }

  // spec: {title, unit, times (seconds), step, coverage[], series: [{label, values}], source}
  function chart(container, key, spec) {
    let box = container.querySelector(`:scope > [data-chart="${CSS.escape(key)}"]`);
    if (!box) {
      box = el("figure", { class: "chart", "data-chart": key });
      container.append(box);
    }
    const known = spec.series.reduce((n, s) => n + s.values.filter((v) => v !== null && v !== undefined).length, 0);
    const partial = spec.coverage.filter((c, i) => c !== null && c !== undefined && c < PARTIAL && spec.series.some((s) => s.values[i] !== null && s.values[i] !== undefined)).length;
    box.dataset.points = String(known);
    box.dataset.partial = String(partial);
    box.dataset.window = `${spec.times[0] || ""}/${spec.step}`;
    const note = () => (partial ? el("p", { class: "note" }, `${partial} partial bucket${partial > 1 ? "s" : ""} (shaded, points circled): the data covers only part of them.`) : null);
    const old = charts.get(box);
    const labels = spec.series.map((s) => s.label).join("\n");
    // A refresh of the same lines swaps the data in place: no flicker, the cursor stays.
    if (old && known && box.dataset.labels === labels && box.dataset.unit === spec.unit) {
      specs.set(box, spec);
      old.setData([spec.times, ...spec.series.map((s) => s.values)]);
      box.querySelector(":scope > p.note")?.remove();
      const n = note();
      if (n) box.append(n);
      return;
    }
    if (old) old.destroy();
    charts.delete(box);
    box.dataset.labels = labels;
    box.dataset.unit = spec.unit;
    box.replaceChildren(el("figcaption", {}, spec.title));
    if (!known) {
      box.append(el("p", { class: "empty" }, "No data in this window. Pick a longer window, or check that the collector on this node is running."));
      return;
    }
    specs.set(box, spec);
    const opts = {
      width: Math.max(280, box.clientWidth || container.clientWidth || 600),
      height: 200,
      cursor: { points: { size: 6 } },
      legend: { live: true },
      scales: { x: { time: true }, y: { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.08 : 1] } },
      axes: [
        { stroke: "#64748b", grid: { stroke: "#eef2f7" }, ticks: { stroke: "#e2e8f0" } },
        { stroke: "#64748b", grid: { stroke: "#eef2f7" }, ticks: { stroke: "#e2e8f0" }, values: (u, splits) => splits.map((v) => fmt(v, spec.unit)),
          // Wide enough for the longest label ("1023.5 MiB/s"), measured rather than guessed.
          size: (u, values) => (values ? Math.max(...values.map((v) => String(v).length)) * 7 + 24 : 60) },
      ],
      series: [
        { label: "Time", value: (u, v) => (v === null ? "–" : new Date(v * 1000).toLocaleString()) },
        ...spec.series.map((s, i) => ({
          label: s.label,
          stroke: COLORS[i % COLORS.length],
          width: 1.6,
          fill: spec.series.length === 1 ? "rgba(37, 99, 235, 0.08)" : undefined,
          dash: s.dash,
          spanGaps: false,
          points: { show: false },
          value: (u, v) => fmt(v, spec.unit),
        })),
      ],
      plugins: [partialPlugin(() => specs.get(box)), tooltipPlugin(() => specs.get(box))],
    };
    const plot = new uPlot(opts, [spec.times, ...spec.series.map((s) => s.values)], box);
    charts.set(box, plot);
    const n = note();
    if (n) box.append(n);
  }

  // Every chartable field of one series (an API `series` object), grouped by family and unit.
  // `exclude`: fields left out (a pod's charts leave out its node's capacity, which would dwarf it).
  function seriesCharts(container, s, families, exclude) {
    const times = s.points.map((p) => Date.parse(p.time) / 1000);
    const coverage = s.points.map((p) => p.coverage);
    const found = groups(s.points, families).map((g) => ({ ...g, fields: g.fields.filter((f) => !exclude || !exclude.test(f)) })).filter((g) => g.fields.length);
    const keys = new Set(found.map((g) => g.key));
    for (const box of container.querySelectorAll(":scope > [data-chart]")) {
      if (!keys.has(box.dataset.chart)) {
        const old = charts.get(box);
        if (old) old.destroy();
        charts.delete(box);
        box.remove();
      }
    }
    if (!found.length) {
      container.replaceChildren(el("p", { class: "empty" }, "No samples in this window. Pick a longer window, or start a collector (or run manage.py loaddemo) and wait a minute."));
      return;
    }
    container.querySelector(":scope > p.empty")?.remove();
    for (const g of found) {
      chart(container, g.key, {
        title: g.title, unit: g.unit, times, step: s.step, coverage,
        series: g.fields.map((f) => ({ label: label(f), values: s.points.map((p) => p[f]), dash: /_(limit|capacity)_(millicores|bytes)$/.test(f) ? [6, 4] : undefined })),
      });
    }
    const note = container.parentElement.querySelector(":scope > .series-note") || el("p", { class: "series-note muted" });
    note.textContent = `${s.points.length} points of ${stepText(s.step)} from ${s.source === "raw" ? "raw samples" : s.source + " rollups"}, ${time(s.start)} to ${time(s.end)}.`;
    container.after(note);
  }

  // One field of many entities' series (/api/series/) in one chart, one line per entity.
  function manyChart(container, key, body, field, title, hrefOf) {
    const times = (body.series[0]?.points || []).map((p) => Date.parse(p.time) / 1000);
    const coverage = (body.series[0]?.points || []).map((p) => p.coverage);
    chart(container, key, {
      title: `${title} (${units[field]})`, unit: units[field], times, step: body.step, coverage,
      series: body.series.map((s) => ({ label: s.name, values: s.points.map((p) => p[field]) })),
    });
  }

  function stepText(step) {
    if (step % 86400 === 0) return `${step / 86400} d`;
    if (step % 3600 === 0) return `${step / 3600} h`;
    if (step % 60 === 0) return `${step / 60} min`;
    return `${step} s`;
  }

  addEventListener("resize", () => {
    for (const [box, plot] of charts) plot.setSize({ width: Math.max(280, box.clientWidth), height: 200 });
  });

  // --- refresh ------------------------------------------------------------------------------
  // Server-rendered parts (marked data-live) are refreshed by fetching this same URL again.
  async function refreshLive() {
    const live = document.querySelectorAll("[data-live][id]");
    if (!live.length) return;
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`${location.pathname}: ${response.status}`);
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const node of live) {
      const fresh = doc.getElementById(node.id);
      if (fresh) node.replaceWith(document.importNode(fresh, true));
    }
    formatCells();
  }

  async function refresh() {
    if (running) return running;
    const error = document.getElementById("error");
    running = (async () => {
      try {
        await Promise.all([refreshFn ? refreshFn() : null, refreshLive()]);
        error.hidden = true;
        document.getElementById("updated").textContent = `Updated at ${new Date().toLocaleTimeString()}`;
        document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
      } catch (e) {
        error.hidden = false;
        error.textContent = `Could not load data: ${e.message}`;
        document.getElementById("updated").textContent = `Update failed at ${new Date().toLocaleTimeString()}`;
      } finally {
        running = null;
      }
    })();
    return running;
  }

  function schedule() {
    clearInterval(timer);
    const paused = state().paused;
    const button = document.getElementById("pause");
    button.textContent = paused ? "Resume" : "Pause";
    button.setAttribute("aria-pressed", String(paused));
    document.body.dataset.paused = String(paused);
    if (!paused) timer = setInterval(refresh, REFRESH_MS);
  }

  // datetime-local holds local time without a zone; the API wants RFC 3339.
  function toLocalInput(iso) {
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function setupToolbar() {
    const select = document.getElementById("window");
    const custom = document.getElementById("custom-range");
    const startInput = document.getElementById("range-start");
    const endInput = document.getElementById("range-end");
    const s = state();
    if (s.start) {
      select.value = "custom";
      custom.hidden = false;
      startInput.value = toLocalInput(s.start);
      if (s.end) endInput.value = toLocalInput(s.end);
    } else {
      if (![...select.options].some((o) => o.value === String(s.window))) select.add(new Option(stepText(s.window), String(s.window)), select.options.length - 1);
      select.value = String(s.window);
    }
    select.addEventListener("change", () => {
      if (select.value === "custom") {
        custom.hidden = false;
        const now = Date.now();
        const w = state().window || 21600;
        if (!startInput.value) startInput.value = toLocalInput(new Date(now - w * 1000).toISOString());
        if (!endInput.value) endInput.value = toLocalInput(new Date(now).toISOString());
        return;
      }
      custom.hidden = true;
      setState({ window: select.value === "21600" ? null : select.value, start: null, end: null });
      refresh();
    });
    document.getElementById("range-apply").addEventListener("click", () => {
      if (!startInput.value) return;
      const start = new Date(startInput.value).toISOString();
      const end = endInput.value ? new Date(endInput.value).toISOString() : null;
      setState({ window: null, start, end });
      refresh();
    });
    document.getElementById("pause").addEventListener("click", () => {
      setState({ paused: state().paused ? null : "1" });
      schedule();
    });
    document.getElementById("refresh-now").addEventListener("click", () => refresh());
  }

  function start(fn) {
    refreshFn = fn;
    setupToolbar();
    formatCells();
    schedule();
    refresh();
  }

  return { points, units, helps, state, seriesQuery, getJSON, getAll, fmt, time, el, link, table, cards, bars, meter, chart, seriesCharts, manyChart, formatCells, start, carryState };
})();
