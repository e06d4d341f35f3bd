// Recent events, newest first: joins, leaves, elections, plans, engine restarts, refused handshakes.
import { esc } from './api.js';

const LIMIT = 100;

export class EventList {
  constructor(list) {
    this.list = list;
    this.entries = [];
    this.render();
  }

  add(entries) {
    const seen = new Set(this.entries.map((e) => e.seq));
    this.entries.push(...entries.filter((e) => !seen.has(e.seq)));
    this.entries.sort((a, b) => b.seq - a.seq);
    this.entries.length = Math.min(this.entries.length, LIMIT);
    this.render();
  }

  render() {
    if (!this.entries.length) {
      this.list.innerHTML = '<li class="empty">Nothing yet.</li>';
      return;
    }
    this.list.innerHTML = this.entries
      .map((e) => {
        const t = new Date(e.at).toLocaleTimeString([], { hour12: false });
        return `<li data-kind="${esc(e.kind)}"><time>${esc(t)}</time><span class="kind" data-kind="${esc(e.kind)}">${esc(e.kind)}</span><span class="text">${esc(e.text)}</span></li>`;
      })
      .join('');
  }
}
