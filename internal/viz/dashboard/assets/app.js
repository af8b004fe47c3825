// Weft viz dashboard: namespaces, then a namespace's workloads with golden
// metrics and edges, refreshed every few seconds from /api/stat and
// /api/edges (the metrics API, relayed by the web server).
"use strict";

const WINDOW = "1m";
const REFRESH_MS = 5000;
let config = {grafanaUrl: "", jaegerUrl: "", version: ""};
let timer = null;

function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

async function getJSON(path) {
  const resp = await fetch(path, {headers: {Accept: "application/json"}});
  let body;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const msg = body && body.error ? body.error.message : `${path}: ${resp.status} ${resp.statusText}`;
    throw new Error(msg);
  }
  return body;
}

function pct(v) {
  if (v === undefined || v === null) return '<span class="muted">-</span>';
  const p = v * 100;
  const cls = p >= 95 ? "ok" : p >= 90 ? "warn" : "bad";
  return `<span class="${cls}">${p.toFixed(2)}%</span>`;
}
function num(v, unit, digits) {
  if (v === undefined || v === null) return '<span class="muted">-</span>';
  return esc(v.toFixed(digits)) + unit;
}
function meshed(r) {
  if (r.meshedPods < 0) return "-";
  return r.totalPods < 0 ? String(r.meshedPods) : `${r.meshedPods}/${r.totalPods}`;
}

function grafanaLink(kind, ns, name) {
  if (!config.grafanaUrl || kind !== "deployment") return ""; // the chart's dashboards: deployment, pod, service, namespace, top line
  const base = config.grafanaUrl.replace(/\/$/, "");
  const url = `${base}/d/linkerd-${kind}/linkerd-${kind}?var-namespace=${encodeURIComponent(ns)}&var-${kind}=${encodeURIComponent(name)}`;
  return ` <a href="${esc(url)}" target="_blank" rel="noopener" title="Grafana dashboard" class="grafana">grafana</a>`;
}

function statTable(rows, kind, nameCell) {
  if (!rows.length) return `<p class="muted">No ${esc(kind)}s.</p>`;
  let h = `<table data-kind="${esc(kind)}"><thead><tr><th>${esc(kind)}</th><th>Meshed</th><th>Success rate</th><th>RPS</th><th>P50</th><th>P95</th><th>P99</th><th>TCP</th></tr></thead><tbody>`;
  for (const r of rows) {
    h += `<tr data-name="${esc(r.name)}"><td>${nameCell(r)}</td><td class="num">${esc(meshed(r))}</td><td class="num sr">${pct(r.successRate)}</td>` +
      `<td class="num rps">${num(r.rps, " rps", 1)}</td><td class="num">${num(r.latencyP50Ms, " ms", 0)}</td><td class="num">${num(r.latencyP95Ms, " ms", 0)}</td>` +
      `<td class="num">${num(r.latencyP99Ms, " ms", 0)}</td><td class="num">${num(r.tcpConnections, "", 0)}</td></tr>`;
  }
  return h + "</tbody></table>";
}

function edgeTable(edges) {
  if (!edges.length) return '<p class="muted">No edges.</p>';
  let h = "<table data-kind=\"edges\"><thead><tr><th>From</th><th>To</th><th>mTLS</th><th>Client identity</th><th>Server identity</th></tr></thead><tbody>";
  for (const e of edges) {
    const lock = e.secured ? '<span class="lock">yes</span>' : `<span class="nolock">no${e.noTlsReason ? " (" + esc(e.noTlsReason) + ")" : ""}</span>`;
    h += `<tr><td>${esc(e.src.namespace + "/" + e.src.name)}</td><td>${esc(e.dst.namespace + "/" + e.dst.name)}</td><td>${lock}</td>` +
      `<td class="muted">${esc(e.clientId || "-")}</td><td class="muted">${esc(e.serverId || "-")}</td></tr>`;
  }
  return h + "</tbody></table>";
}

// showError shows errs in the banner, after prefix (metrics errors by
// default; tap's errors name themselves).
function showError(errs, prefix = "Metrics are unavailable: ") {
  const el = document.getElementById("error");
  if (!errs.length) { el.hidden = true; el.textContent = ""; return; }
  el.hidden = false;
  el.textContent = prefix + errs.join("; ");
}

async function settle(promises) {
  const out = await Promise.allSettled(promises);
  const errs = out.filter(o => o.status === "rejected").map(o => o.reason.message);
  showError([...new Set(errs)]);
  return out.map(o => o.status === "fulfilled" ? o.value : null);
}

async function renderNamespaces() {
  document.getElementById("crumbs").innerHTML = "Namespaces";
  const [ns] = await settle([getJSON(`/api/stat?kind=namespace&all_namespaces=true&window=${WINDOW}`)]);
  if (!ns) { document.getElementById("main").innerHTML = '<p class="muted">No data.</p>'; return; }
  document.getElementById("main").innerHTML = "<h2>Namespaces</h2>" +
    statTable(ns.rows, "namespace", r => `<a href="#/namespaces/${encodeURIComponent(r.name)}">${esc(r.name)}</a>`);
}

async function renderNamespace(ns) {
  document.getElementById("crumbs").innerHTML = `<a href="#/">Namespaces</a> / ${esc(ns)}`;
  const q = `namespace=${encodeURIComponent(ns)}&window=${WINDOW}`;
  const kinds = ["deployment", "statefulset", "daemonset"];
  const res = await settle([...kinds.map(k => getJSON(`/api/stat?kind=${k}&${q}`)), getJSON(`/api/edges?kind=deployment&${q}`)]);
  let h = "";
  kinds.forEach((k, i) => {
    if (!res[i]) return;
    if (k !== "deployment" && !res[i].rows.length) return;
    const page = r => `#/namespaces/${encodeURIComponent(ns)}/tap/${k}/${encodeURIComponent(r.name)}`;
    h += `<h2>${k[0].toUpperCase() + k.slice(1)}s</h2>` + statTable(res[i].rows, k, r => `<a href="${page(r)}" class="wl" title="topology and live requests">${esc(r.name)}</a>` +
      grafanaLink(k, ns, r.name) + ` <a href="${page(r)}" class="taplink" title="live requests">tap</a>`);
  });
  if (res[kinds.length]) h += "<h2>Edges</h2>" + edgeTable(res[kinds.length].edges);
  document.getElementById("main").innerHTML = h || '<p class="muted">No data.</p>';
}

// The live tap of one workload: rows appended as the tap server streams
// request ends (JSON lines relayed by /api/tap).
let tapAbort = null;
function tapRow(req, rsp, end) {
  const st = rsp ? rsp.responseInitEvent.httpStatus : "-";
  const cls = end.responseEndEvent.error || (typeof st === "number" && st >= 500) ? "bad" : "ok";
  const lat = rsp ? Math.round(rsp.responseInitEvent.sinceRequestInit / 1000) + " µs" : "-";
  const r = req.requestInitEvent;
  return `<tr><td>${esc(req.proxyDirection === "INBOUND" ? "in" : "out")}</td><td>${esc(req.source)}</td><td>${esc(req.destination)}</td>` +
    `<td>${req.tls ? '<span class="lock">yes</span>' : '<span class="nolock">no</span>'}</td><td>${esc(r.method)}</td><td>${esc(r.authority)}</td><td>${esc(r.path)}</td>` +
    `<td class="num ${cls}">${esc(st)}</td><td class="num">${esc(lat)}</td><td class="num">${esc(end.responseEndEvent.responseBytes)} B</td></tr>`;
}
async function renderTap(ns, kind, name) {
  document.getElementById("crumbs").innerHTML = `<a href="#/">Namespaces</a> / <a href="#/namespaces/${encodeURIComponent(ns)}">${esc(ns)}</a> / ${esc(kind)}/${esc(name)} / tap`;
  document.getElementById("main").innerHTML = `<h2>Topology of ${esc(kind)}/${esc(name)}</h2><div id="topology-wrap" class="graph"><p class="muted">Loading edges…</p></div>` +
    `<h2>Edges</h2><div id="wl-edges"></div>` +
    `<h2>Live requests of ${esc(kind)}/${esc(name)}</h2><p id="tapstate" class="muted">Tapping…</p>` +
    '<table data-kind="tap"><thead><tr><th>Proxy</th><th>Source</th><th>Destination</th><th>mTLS</th><th>Method</th><th>Authority</th><th>Path</th><th>Status</th><th>Latency</th><th>Size</th></tr></thead><tbody id="taprows"></tbody></table>';
  refreshGraph(ns, kind, name);
  if (tapAbort) tapAbort.abort();
  tapAbort = new AbortController();
  const state = document.getElementById("tapstate");
  try {
    const resp = await fetch(`/api/tap?kind=${encodeURIComponent(kind)}&namespace=${encodeURIComponent(ns)}&name=${encodeURIComponent(name)}`, {signal: tapAbort.signal});
    if (!resp.ok) {
      let msg = `${resp.status} ${resp.statusText}`;
      try { const b = await resp.json(); if (b.error) msg = b.error.message; } catch (e) {}
      showError(["Tap failed: " + msg], "");
      state.textContent = "";
      return;
    }
    showError([]);
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    const pending = {};
    let buf = "", n = 0;
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += dec.decode(value, {stream: true});
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i); buf = buf.slice(i + 1);
        if (!line) continue;
        const ev = JSON.parse(line);
        if (ev.error) { showError(["Tap: " + ev.error], ""); continue; }
        const p = pending[ev.id] || (pending[ev.id] = {});
        if (ev.requestInitEvent) p.req = ev;
        if (ev.responseInitEvent) p.rsp = ev;
        if (ev.responseEndEvent && p.req) {
          document.getElementById("taprows").insertAdjacentHTML("afterbegin", tapRow(p.req, p.rsp, ev));
          delete pending[ev.id];
          state.textContent = `${++n} requests`;
          document.body.dataset.tapped = String(n);
        }
      }
    }
    state.textContent += " (tap ended)";
  } catch (e) {
    if (e.name !== "AbortError") showError(["Tap failed: " + e.message], "");
  }
}

async function render() {
  const t = location.hash.match(/^#\/namespaces\/([^/]+)\/tap\/([^/]+)\/([^/]+)/);
  if (t) {
    clearTimeout(timer);
    renderTap(decodeURIComponent(t[1]), t[2], decodeURIComponent(t[3]));
    document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
    return "tap";
  }
  if (tapAbort) { tapAbort.abort(); tapAbort = null; }
  clearTimeout(graphTimer); graphFor = "";
  const m = location.hash.match(/^#\/namespaces\/([^/]+)/);
  try {
    if (m) await renderNamespace(decodeURIComponent(m[1]));
    else await renderNamespaces();
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } finally {
    document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
  }
}

function schedule() {
  clearTimeout(timer);
  render().then(page => { if (page !== "tap") timer = setTimeout(schedule, REFRESH_MS); },
    () => { timer = setTimeout(schedule, REFRESH_MS); });
}

window.addEventListener("hashchange", schedule);
getJSON("/api/config").then(c => {
  config = c;
  document.getElementById("version").textContent = c.version ? "Weft " + c.version : "";
}).catch(() => {}).finally(() => {
  document.getElementById("window").textContent = WINDOW;
  schedule();
});
