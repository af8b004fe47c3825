// Weft viz dashboard: the workload page's topology graph (loaded before app.js;
// it uses app.js's esc, getJSON, edgeTable, WINDOW and REFRESH_MS at call time).
"use strict";

// The workload page's topology graph: an inline SVG drawn from
// /api/edges (the edges touching the workload) and /api/stat --from/--to
// (each edge's success rate): sources on the left, the workload in the
// middle, destinations on the right; solid edges are mTLS, dashed are not;
// colour by success rate (grey when unknown).
const GRAPH_W = 1100, NODE_W = 200, NODE_H = 40, ROW_H = 64;
function epKey(ep) { return ep.namespace + "/" + ep.name; }
function srClass(sr) {
  if (sr === undefined || sr === null) return "unknown";
  return sr >= 0.95 ? "ok" : sr >= 0.9 ? "warn" : "bad";
}
function graphNode(ep, x, y, role, homeNs) {
  const kind = ep.kind && ep.kind !== "deployment" ? ep.kind + "/" : "";
  const label = kind + ep.name;
  const sub = ep.namespace && ep.namespace !== homeNs ? ep.namespace : "";
  return `<g class="node ${role}" data-name="${esc(epKey(ep))}" data-role="${role}">` +
    `<rect x="${x - NODE_W / 2}" y="${y - NODE_H / 2}" width="${NODE_W}" height="${NODE_H}" rx="8"/>` +
    `<text x="${x}" y="${sub ? y - 3 : y + 5}" text-anchor="middle" class="label">${esc(label)}</text>` +
    (sub ? `<text x="${x}" y="${y + 13}" text-anchor="middle" class="ns">${esc(sub)}</text>` : "") + "</g>";
}
function graphEdge(e, x1, y1, x2, y2, sr) {
  const cls = srClass(sr);
  const mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
  const text = (e.secured ? "mTLS" : "no mTLS") + (sr === undefined || sr === null ? "" : ` · ${(sr * 100).toFixed(1)}%`);
  // The label starts right of a padlock drawn in SVG (no icon font
  // needed); together they are centred on the edge, taking 6.8 px per
  // character as the bold 12 px label's approximate width.
  const lockW = e.secured ? 14 : 0;
  const tx = mx - (text.length * 6.8 + lockW) / 2 + lockW, ty = my - 7;
  const lock = e.secured ? `<g class="padlock" transform="translate(${(tx - lockW).toFixed(1)},${(ty - 11).toFixed(1)})"><path d="M2.5,5 V3.5 a2.5,2.5 0 0 1 5,0 V5" stroke-width="1.6"/><rect x="0.5" y="5" width="9" height="7" rx="1.5"/></g>` : "";
  return `<g class="edge sr-${cls} ${e.secured ? "mtls" : "plain"}" data-src="${esc(epKey(e.src))}" data-dst="${esc(epKey(e.dst))}" data-mtls="${e.secured}"` +
    (sr === undefined || sr === null ? "" : ` data-sr="${sr.toFixed(4)}"`) + `>` +
    `<title>${esc(epKey(e.src))} → ${esc(epKey(e.dst))}: ${e.secured ? "mTLS" : "not mTLS" + (e.noTlsReason ? " (" + esc(e.noTlsReason) + ")" : "")}</title>` +
    `<line x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}" marker-end="url(#arrow-${cls})"/>` +
    `<text x="${tx.toFixed(1)}" y="${ty}">${esc(text)}</text>${lock}</g>`;
}
function topologySVG(ns, kind, name, edges, srIn, srOut) {
  const self = {namespace: ns, kind: kind, name: name};
  const isSelf = ep => ep.namespace === ns && ep.name === name && ep.kind === kind;
  const ins = edges.filter(e => isSelf(e.dst) && !isSelf(e.src));
  const outs = edges.filter(e => isSelf(e.src));
  const rows = Math.max(1, ins.length, outs.length);
  const h = rows * ROW_H + 24;
  const cx = GRAPH_W / 2, cy = h / 2, lx = 20 + NODE_W / 2, rx = GRAPH_W - 20 - NODE_W / 2;
  const y = (i, n) => h / 2 + (i - (n - 1) / 2) * ROW_H;
  let defs = "<defs>";
  for (const c of ["ok", "warn", "bad", "unknown"]) {
    defs += `<marker id="arrow-${c}" class="arrow sr-${c}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="4" markerHeight="4" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>`;
  }
  defs += "</defs>";
  let edgesSVG = "", nodes = "";
  ins.forEach((e, i) => {
    const yy = y(i, ins.length);
    nodes += graphNode(e.src, lx, yy, "source", ns);
    edgesSVG += graphEdge(e, lx + NODE_W / 2, yy, cx - NODE_W / 2, cy, srIn[epKey(e.src)]);
  });
  outs.forEach((e, i) => {
    const yy = y(i, outs.length);
    nodes += graphNode(e.dst, rx, yy, "destination", ns);
    edgesSVG += graphEdge(e, cx + NODE_W / 2, cy, rx - NODE_W / 2, yy, srOut[epKey(e.dst)]);
  });
  nodes += graphNode(self, cx, cy, "self", ns);
  const empty = ins.length + outs.length === 0 ? `<text x="${cx}" y="${cy + NODE_H}" text-anchor="middle" class="ns">no traffic to or from it in the last ${WINDOW}</text>` : "";
  return `<svg id="topology" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${GRAPH_W} ${h + (empty ? 30 : 0)}" width="${GRAPH_W}" height="${h + (empty ? 30 : 0)}" ` +
    `data-edges="${ins.length + outs.length}" role="img" aria-label="topology of ${esc(kind)}/${esc(name)}">${defs}${edgesSVG}${nodes}${empty}</svg>`;
}
function srByKey(resp) {
  const m = {};
  if (resp) for (const r of resp.rows) m[r.namespace + "/" + r.name] = r.successRate;
  return m;
}
let graphTimer = null, graphFor = "";
async function refreshGraph(ns, kind, name) {
  const me = `${ns}/${kind}/${name}`;
  clearTimeout(graphTimer);
  graphFor = me;
  const res = name ? await Promise.allSettled([
    getJSON(`/api/edges?kind=${encodeURIComponent(kind)}&namespace=${encodeURIComponent(ns)}&window=${WINDOW}`),
    getJSON(`/api/stat?kind=${encodeURIComponent(kind)}&all_namespaces=true&to=${encodeURIComponent(kind + "/" + name)}&to_namespace=${encodeURIComponent(ns)}&window=${WINDOW}`),
    getJSON(`/api/stat?kind=${encodeURIComponent(kind)}&all_namespaces=true&from=${encodeURIComponent(kind + "/" + name)}&from_namespace=${encodeURIComponent(ns)}&window=${WINDOW}`),
  ]) : [];
  if (graphFor !== me) return; // the page changed meanwhile
  const wrap = document.getElementById("topology-wrap"), table = document.getElementById("wl-edges");
  if (!wrap) return;
  if (res[0].status === "rejected") {
    wrap.innerHTML = `<p class="error">Edges are unavailable: ${esc(res[0].reason.message)}</p>`;
  } else {
    const isSelf = ep => ep.namespace === ns && ep.name === name && ep.kind === kind;
    const edges = res[0].value.edges.filter(e => isSelf(e.src) || isSelf(e.dst));
    const val = r => r.status === "fulfilled" ? r.value : null;
    wrap.innerHTML = topologySVG(ns, kind, name, edges, srByKey(val(res[1])), srByKey(val(res[2])));
    table.innerHTML = edgeTable(edges);
    document.body.dataset.graphed = String(Number(document.body.dataset.graphed || 0) + 1);
  }
  graphTimer = setTimeout(() => { if (graphFor === me) refreshGraph(ns, kind, name); }, REFRESH_MS);
}
