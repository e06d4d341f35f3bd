// Talking to this peer's API from the page: the API key (asked for once, kept in this tab) and a
// reader for server-sent events over fetch (EventSource cannot send an Authorization header).

const KEY = 'mlx-mesh-api-key';

export function apiFetch(path, init = {}) {
  const key = sessionStorage.getItem(KEY);
  const headers = new Headers(init.headers ?? {});
  if (key) headers.set('authorization', `Bearer ${key}`);
  return fetch(path, { ...init, headers });
}

/** Shows the key dialog until the user enters a key; resolves once one is stored. */
export function askForKey(refused) {
  const dialog = document.getElementById('key-dialog');
  document.getElementById('key-error').hidden = !refused;
  return new Promise((resolve) => {
    const form = document.getElementById('key-form');
    form.addEventListener(
      'submit',
      () => {
        sessionStorage.setItem(KEY, document.getElementById('key-input').value.trim());
        resolve();
      },
      { once: true },
    );
    if (!dialog.open) dialog.showModal();
  });
}

/** Calls onEvent(name, data) for every event of a text/event-stream response, until it ends. */
export async function readEvents(response, onEvent, signal) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  const cancel = () => reader.cancel().catch(() => {});
  signal?.addEventListener('abort', cancel);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) name = line.slice(7);
          else if (line.startsWith('data: ')) data.push(line.slice(6));
        }
        if (data.length) onEvent(name, data.join('\n'));
      }
    }
  } finally {
    signal?.removeEventListener('abort', cancel);
  }
}

export const esc = (s) =>
  String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

export function fmtBytes(n) {
  if (!n) return '–';
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(1)} GiB`;
  return n >= 2 ** 20 ? `${Math.round(n / 2 ** 20)} MiB` : `${Math.max(1, Math.round(n / 1024))} KiB`;
}

export function fmtTps(n) {
  return n ? `${n >= 100 ? Math.round(n) : n.toFixed(1)}` : '0';
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return '–';
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : ms >= 10 ? `${Math.round(ms)} ms` : `${ms.toFixed(2)} ms`;
}
