// Dashboard: nodes and namespaces with their newest usage and a sparkline each, and a larger
// CPU / memory chart of the row clicked. Everything comes from the read API with the session.
"use strict";

const MiB = 1024 * 1024;
const windowSelect = document.getElementById("window");

function fmt(value, digits = 0) {
  return Number.isFinite(value) ? Number(value).toFixed(digits) : "–";
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
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

function polyline(svg, values, width, height, max, coverage) {
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const known = values.filter((v) => v !== null);
  if (!known.length) return;
  const top = max || Math.max(...known) || 1;
  // Gaps (buckets without data) split the line rather than dropping to zero.
  let points = [];
  const flush = () => {
    if (points.length) {
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", points.join(" "));
      svg.appendChild(line);
    }
    points = [];
  };
  const partial = [];
  values.forEach((v, i) => {
    if (v === null) return flush();
    const x = values.length > 1 ? (i / (values.length - 1)) * width : width / 2;
    const y = height - (v / top) * (height - 4) - 2;
    points.push(`${x.toFixed(1)},${y.toFixed(1)}`);
    // A bucket its data covers only in part (still filling, data started or stopped in it, a
    // collector gap) is marked, so a dip there is not read as a real drop.
    const c = coverage ? coverage[i] : null;
    if (c !== null && c !== undefined && c < 0.999) partial.push([x, y, c]);
  });
  flush();
  for (const [x, y, c] of partial) {
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x.toFixed(1));
    dot.setAttribute("cy", y.toFixed(1));
    dot.setAttribute("r", "3");
    dot.setAttribute("class", "partial");
    const title = document.createElementNS(ns, "title");
    title.textContent = `partial bucket: ${Math.round(c * 100)} % covered`;
    dot.appendChild(title);
    svg.appendChild(dot);
  }
  return top;
}

function sparkline(values, coverage) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 120 24");
  svg.setAttribute("preserveAspectRatio", "none");
  polyline(svg, values, 120, 24, undefined, coverage);
  return svg;
}

async function series(url) {
  const body = await getJSON(`${url}?window=${windowSelect.value}`);
  return body.series;
}

function cell(row, text, numeric) {
  const td = row.insertCell();
  td.textContent = text;
  if (numeric) td.className = "num";
  return td;
}

async function showChart(title, url) {
  const s = await series(url);
  document.getElementById("chart-panel").hidden = false;
  document.getElementById("chart-title").textContent = title;
  const cpu = s.points.map((p) => p.cpu_millicores);
  const memory = s.points.map((p) => (p.memory_working_set_bytes === null ? null : p.memory_working_set_bytes / MiB));
  const coverage = s.points.map((p) => p.coverage);
  polyline(document.getElementById("chart-cpu"), cpu, 600, 160, undefined, coverage);
  polyline(document.getElementById("chart-memory"), memory, 600, 160, undefined, coverage);
  // Only buckets with data: one before the data starts has coverage 0 and nothing to draw.
  const partial = s.points.filter((p) => p.cpu_millicores !== null && p.coverage !== null && p.coverage < 0.999).length;
  document.getElementById("chart-note").textContent =
    `${s.points.length} points of ${s.step} s from ${s.source === "raw" ? "raw samples" : s.source + " rollups"}, ${s.start} to ${s.end}` +
    (partial ? `; ${partial} partly covered (circled)` : "");
}

// Every row's trend in one request (/api/series/), not one request per row.
async function trends(kind, names) {
  if (!names.length) return new Map();
  const query = new URLSearchParams({ kind, window: windowSelect.value });
  for (const name of names) query.append("name", name);
  const body = await getJSON(`/api/series/?${query}`);
  return new Map(body.series.map((s) => [s.name, s.points]));
}

function drawTrend(td, points) {
  if (points) td.appendChild(sparkline(points.map((p) => p.cpu_millicores)));
}

async function fillNodes() {
  const body = document.querySelector("#nodes tbody");
  body.replaceChildren();
  const nodes = await getAll("/api/nodes/");
  const trendOf = trends("node", nodes.map((n) => n.name).slice(0, 200));
  for (const node of nodes) {
    const row = body.insertRow();
    row.className = "pick";
    const u = node.usage || {};
    cell(row, node.name);
    cell(row, `${fmt(u.cpu_millicores)} m`, true);
    cell(row, `${fmt(u.cpu_percent_of_capacity, 1)} %`, true);
    cell(row, `${fmt(u.memory_working_set_bytes / MiB)} MiB`, true);
    cell(row, `${fmt(u.memory_percent_of_capacity, 1)} %`, true);
    const trend = cell(row, "");
    row.addEventListener("click", () => showChart(`Node ${node.name}`, node.url));
    trendOf.then((m) => drawTrend(trend, m.get(node.name)));
  }
}

async function fillNamespaces() {
  const body = document.querySelector("#namespaces tbody");
  body.replaceChildren();
  const namespaces = await getAll("/api/namespaces/");
  const trendOf = trends("namespace", namespaces.map((n) => n.name).slice(0, 200));
  for (const ns of namespaces) {
    const row = body.insertRow();
    row.className = "pick";
    const u = ns.usage || {};
    cell(row, ns.name);
    cell(row, ns.pods, true);
    cell(row, `${fmt(u.cpu_millicores)} m`, true);
    cell(row, `${fmt(u.memory_working_set_bytes / MiB)} MiB`, true);
    const trend = cell(row, "");
    row.addEventListener("click", () => showChart(`Namespace ${ns.name}`, ns.url));
    trendOf.then((m) => drawTrend(trend, m.get(ns.name)));
  }
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    error.hidden = true;
    await Promise.all([fillNodes(), fillNamespaces()]);
  } catch (e) {
    error.hidden = false;
    error.textContent = `Could not load data: ${e.message}`;
  }
}

windowSelect.addEventListener("change", refresh);
refresh();
setInterval(refresh, 60000);
