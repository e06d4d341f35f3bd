// The dashboard's wiring: one event stream from this peer (state on every change, else every second,
// plus recent events), peers that left kept on screen as gone, and the key dialog when the API has one.
import { apiFetch, askForKey, fmtTps, readEvents } from './api.js';
import { setupChat } from './chat.js';
import { EventList } from './events.js';
import { renderPeers } from './peers.js';
import { renderTopology } from './topology.js';

const $ = (id) => document.getElementById(id);
const GONE_KEPT_MS = 10 * 60_000;

const known = new Map(); // device id → { device, goneAt }
let state = null;
const events = new EventList($('events'));

function nameOf(id) {
  return known.get(id)?.device.name || id;
}

function view() {
  const now = Date.now();
  const live = new Set(state.devices.map((d) => d.device_id));
  for (const d of state.devices) known.set(d.device_id, { device: d, goneAt: null });
  for (const [id, k] of known) {
    if (live.has(id)) continue;
    k.goneAt ??= now;
    if (now - k.goneAt > GONE_KEPT_MS) known.delete(id);
  }
  const gone = [...known.values()]
    .filter((k) => k.goneAt !== null)
    .map((k) => ({ ...k.device, status: 'gone', role: 'worker', tokens_per_sec: 0, requests_in_flight: 0 }));
  return { self: state.self, nLayers: state.n_layers, links: state.links, peers: [...state.devices, ...gone] };
}

function render() {
  const v = view();
  $('cluster-status').textContent = state.cluster_status;
  $('cluster-status').dataset.status = state.cluster_status;
  $('cluster-name').textContent = state.cluster;
  $('model').textContent = state.model ?? '–';
  $('term').textContent = state.term;
  $('world-size').textContent = state.world_size;
  $('total-tps').textContent = `${fmtTps(Math.max(0, ...state.devices.map((d) => d.tokens_per_sec)))} tok/s`;
  $('viewer').textContent = nameOf(state.self);
  $('layers-hint').textContent = state.n_layers ? `${state.n_layers} layers split by memory` : '';
  const notice = $('notice');
  notice.hidden = !state.not_ready;
  notice.textContent = state.not_ready ?? '';
  $('send').dataset.clusterReady = state.not_ready ? 'false' : 'true';
  renderTopology($('topology'), v);
  renderPeers($('peers'), v);
}

function offline(why) {
  $('cluster-status').textContent = 'offline';
  $('cluster-status').dataset.status = 'offline';
  $('notice').hidden = false;
  $('notice').textContent = why;
}

async function connect() {
  let refused = false;
  for (let delay = 500; ; delay = Math.min(delay * 2, 5000)) {
    try {
      const res = await apiFetch('/dashboard/stream');
      if (res.status === 401) {
        await askForKey(refused);
        refused = true;
        delay = 250;
        continue;
      }
      if (!res.ok) throw new Error(`the stream answered ${res.status}`);
      refused = false;
      delay = 500;
      await readEvents(res, (name, data) => {
        if (name === 'state') {
          state = JSON.parse(data);
          render();
        } else if (name === 'events') events.add(JSON.parse(data));
        else if (name === 'event') events.add([JSON.parse(data)]);
      });
      offline('the stream from this peer ended; reconnecting…');
    } catch (err) {
      offline(`this peer's API is unreachable (${err.message}); retrying…`);
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

setupChat(nameOf);
connect();
