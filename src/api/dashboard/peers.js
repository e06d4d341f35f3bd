// One card per peer: name, role, status, host, backend, memory, engine, live tok/s and requests in
// flight, and its layer range drawn over all the model's layers. Cards have a fixed size.
import { esc, fmtBytes, fmtTps } from './api.js';

function layerBar(layers, total) {
  if (!total) return '<div class="layerbar" style="grid-template-columns:1fr"><span class="cell"></span></div>';
  const cells = Array.from({ length: total }, (_, i) => `<span class="cell${layers && i >= layers[0] && i < layers[1] ? ' on' : ''}"></span>`);
  return `<div class="layerbar" style="grid-template-columns:repeat(${total},1fr)" aria-hidden="true">${cells.join('')}</div>`;
}

function layerText(layers, total, status) {
  if (status === 'excluded') return 'left out of the plan';
  if (!layers) return total ? 'no layers yet' : 'waiting for a plan';
  const n = layers[1] - layers[0];
  return `layers ${layers[0]}–${layers[1] - 1} · ${n} of ${total}`;
}

export function renderPeers(container, view) {
  container.innerHTML = view.peers
    .map((p) => {
      const gone = p.status === 'gone';
      const memory = p.ram_bytes ? `${fmtBytes(p.ram_bytes)} RAM` : null;
      const engine = p.engine && p.engine !== 'ready' ? `engine ${p.engine}` : null;
      const meta = [p.hostname, p.backend, memory, engine].filter(Boolean).join(' · ');
      const loaded = p.layers && p.memory_bytes !== p.ram_bytes ? ` · ${fmtBytes(p.memory_bytes)}` : '';
      // Weights coming over the mesh: how far, and from whom.
      const f = p.fetch;
      const fetching = f && f.state === 'fetching' ? ` · fetching ${Math.floor((100 * f.bytes_done) / Math.max(1, f.bytes_total))}% of ${fmtBytes(f.bytes_total)} from ${f.from}` : '';
      return `<article class="peer${p.role === 'coordinator' && !gone ? ' coordinator' : ''}" data-peer="${esc(p.device_id)}" data-status="${esc(p.status)}" data-layers="${p.layers ? `${p.layers[0]}-${p.layers[1]}` : ''}">
        <div class="head">
          <span class="name" title="${esc(p.device_id)}">${esc(p.name || p.device_id)}</span>
          <span class="badge status" data-status="${esc(p.status)}">${esc(p.status)}</span>
        </div>
        <div class="meta">${p.role === 'coordinator' && !gone ? '<span class="role">★ coordinator</span>' : `rank ${esc(p.rank)}`} · ${p.device_id === view.self ? '<span class="self">this peer</span> · ' : ''}${esc(meta)}</div>
        <div>${layerBar(p.layers, view.nLayers)}<div class="layers">${esc(layerText(p.layers, view.nLayers, p.status) + loaded + fetching)}</div></div>
        <div class="stats">
          <div class="stat"><span class="v">${gone ? '–' : fmtTps(p.tokens_per_sec)}</span><span class="k">tok/s</span></div>
          <div class="stat"><span class="v">${gone ? '–' : p.requests_in_flight}</span><span class="k">in flight</span></div>
        </div>
      </article>`;
    })
    .join('');
}
