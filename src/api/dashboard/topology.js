// The cluster as a graph: peers on a ring in rank order, the coordinator marked, this peer ringed,
// links labelled with their heartbeat RTT, pipeline links animated while tokens flow.
import { esc, fmtMs, fmtTps } from './api.js';

const W = 640;
const H = 260;

function positions(n) {
  if (n === 1) return [[W / 2, H / 2]];
  if (n === 2) return [[W * 0.27, H / 2], [W * 0.73, H / 2]];
  // Three peers as a triangle standing on its base (no vertical link for labels to collide on).
  const start = n === 3 ? -Math.PI / 2 : Math.PI;
  return Array.from({ length: n }, (_, i) => {
    const a = start + (2 * Math.PI * i) / n;
    return [W / 2 + 220 * Math.cos(a), H / 2 - 5 + 72 * Math.sin(a)];
  });
}

export function renderTopology(svg, view) {
  const peers = view.peers;
  if (!peers.length) {
    svg.innerHTML = `<text class="empty" x="${W / 2}" y="${H / 2}" text-anchor="middle">waiting for the peer…</text>`;
    return;
  }
  const pos = new Map(peers.map((p, i) => [p.device_id, positions(peers.length)[i]]));
  const pipeline = peers.filter((p) => p.layers && p.status !== 'gone').sort((a, b) => a.layers[0] - b.layers[0]);
  const next = new Map(pipeline.slice(0, -1).map((p, i) => [p.device_id, pipeline[i + 1].device_id]));
  const byId = new Map(peers.map((p) => [p.device_id, p]));
  const edges = view.links
    .filter((l) => pos.has(l.a) && pos.has(l.b))
    .map((l) => {
      const [x1, y1] = pos.get(l.a);
      const [x2, y2] = pos.get(l.b);
      const inPipeline = next.get(l.a) === l.b || next.get(l.b) === l.a;
      const busy = inPipeline && byId.get(l.a).tokens_per_sec > 0 && byId.get(l.b).tokens_per_sec > 0;
      const cls = `edge${inPipeline ? ' pipeline' : ''}${busy ? ' busy' : ''}`;
      // The label sits beside the line's middle, on the side facing away from the picture's centre.
      const len = Math.hypot(x2 - x1, y2 - y1) || 1;
      let [nx, ny] = [-(y2 - y1) / len, (x2 - x1) / len];
      const [mx, my] = [(x1 + x2) / 2, (y1 + y2) / 2];
      if ((mx - W / 2) * nx + (my - H / 2) * ny < 0 || (Math.abs(ny) > 0.9 && ny > 0)) [nx, ny] = [-nx, -ny];
      const anchor = Math.abs(nx) > 0.7 ? (nx > 0 ? 'start' : 'end') : 'middle';
      const label = l.rtt_ms === null ? '' : `<text class="rtt" x="${mx + nx * 10}" y="${my + ny * 10 + 4}" text-anchor="${anchor}">${esc(fmtMs(l.rtt_ms))}</text>`;
      return `<line class="${cls}" x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}"/>${label}`;
    });
  const nodes = peers.map((p) => {
    const [x, y] = pos.get(p.device_id);
    const crown = p.role === 'coordinator' && p.status !== 'gone' ? `<text class="crown" x="${x}" y="${y - 36}" text-anchor="middle">★ COORDINATOR</text>` : '';
    const self = p.device_id === view.self ? `<circle class="self-ring" cx="${x}" cy="${y}" r="32"/>` : '';
    const sub = p.status === 'gone' ? 'gone' : `${fmtTps(p.tokens_per_sec)} tok/s · ${p.requests_in_flight} in flight`;
    return `<g class="node" data-peer="${esc(p.device_id)}" data-status="${esc(p.status)}">
      ${self}<circle class="body" cx="${x}" cy="${y}" r="25"/>
      <text class="initial" x="${x}" y="${y + 6}" text-anchor="middle">${esc((p.name || p.hostname || '?').slice(0, 1).toUpperCase())}</text>
      ${crown}
      <text class="name" x="${x}" y="${y + 45}" text-anchor="middle">${esc(p.name || p.device_id)}</text>
      <text class="sub" x="${x}" y="${y + 60}" text-anchor="middle">${esc(sub)}</text>
    </g>`;
  });
  svg.innerHTML = edges.join('') + nodes.join('');
}
