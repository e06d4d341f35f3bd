// The chat box: streams a completion through the mesh from this peer's OpenAI API and shows its time
// to first token, tokens/s and, once done, the per-stage times of its trace. A model without a chat
// template gets the text as a plain completion prompt.
import { apiFetch, esc, fmtMs, readEvents } from './api.js';

const $ = (id) => document.getElementById(id);

export function setupChat(names) {
  const log = $('chat-log');
  const form = $('chat-form');
  const send = $('send');
  let mode = 'chat';
  let history = [];
  let running = null;

  const setStats = (ttft, tps, tokens) => {
    $('stat-ttft').textContent = ttft === null ? '–' : fmtMs(ttft);
    $('stat-tps').textContent = tps === null ? '–' : `${tps.toFixed(1)} tok/s`;
    $('stat-tokens').textContent = tokens === null ? '–' : String(tokens);
  };

  const turn = (cls, text) => {
    log.querySelector('.empty')?.remove();
    const p = document.createElement('p');
    p.className = `turn ${cls}`;
    p.textContent = text;
    log.append(p);
    log.scrollTop = log.scrollHeight;
    return p;
  };

  async function request(prompt, maxTokens, temperature, signal) {
    const common = { stream: true, stream_options: { include_usage: true }, max_tokens: maxTokens, temperature };
    const body = mode === 'chat' ? { ...common, messages: [...history, { role: 'user', content: prompt }] } : { ...common, prompt };
    const path = mode === 'chat' ? '/v1/chat/completions' : '/v1/completions';
    const res = await apiFetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal });
    if (res.status === 400 && mode === 'chat') {
      const err = await res.json().catch(() => ({}));
      if (err.error?.code === 'no_chat_template') {
        mode = 'completion';
        $('chat-mode').textContent = 'plain completion: the model has no chat template';
        return request(prompt, maxTokens, temperature, signal);
      }
      throw new Error(err.error?.message ?? 'the request was refused');
    }
    if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error?.message ?? `HTTP ${res.status}`);
    return res;
  }

  async function showTrace(id) {
    const res = await apiFetch(`/debug/requests/${encodeURIComponent(id)}`);
    if (!res.ok) return;
    const t = await res.json();
    const parts = t.hops
      .filter((h) => !h.return && h.steps)
      .map((h) => `${names(h.peer)} ${fmtMs(h.compute_ms / h.steps)}${h.transfer_ms ? ` +${fmtMs(h.transfer_ms / h.steps)} wire` : ''}`);
    $('stat-trace').textContent = parts.length ? `per step: ${parts.join(' → ')}` : '';
    $('stat-trace').title = `request ${id}`;
  }

  async function run(prompt) {
    const maxTokens = Number($('max-tokens').value) || 128;
    const temperature = Number($('temperature').value);
    turn('user', prompt);
    const answer = turn('answer streaming', '');
    const text = document.createTextNode('');
    answer.append(text);
    const abort = new AbortController();
    running = abort;
    send.textContent = 'Stop';
    setStats(null, null, null);
    $('stat-trace').textContent = '';
    const t0 = performance.now();
    let first = null;
    let last = null;
    let chunks = 0;
    let usage = null;
    let id = null;
    let full = '';
    try {
      const res = await request(prompt, maxTokens, temperature, abort.signal);
      await readEvents(
        res,
        (_name, data) => {
          if (data === '[DONE]') return;
          const msg = JSON.parse(data);
          if (msg.error) throw new Error(msg.error.message);
          id ??= msg.id;
          if (msg.usage) usage = msg.usage;
          const choice = msg.choices?.[0];
          const piece = mode === 'chat' ? choice?.delta?.content : choice?.text;
          if (!piece) return;
          const now = performance.now();
          first ??= now;
          last = now;
          chunks++;
          full += piece;
          text.data = full;
          log.scrollTop = log.scrollHeight;
          setStats(first - t0, chunks > 1 ? ((chunks - 1) * 1000) / (now - first) : null, chunks);
        },
        abort.signal,
      );
      const tokens = usage?.completion_tokens ?? chunks;
      setStats(first === null ? null : first - t0, tokens > 1 && last > first ? ((tokens - 1) * 1000) / (last - first) : null, tokens);
      if (mode === 'chat') history.push({ role: 'user', content: prompt }, { role: 'assistant', content: full });
      if (id) showTrace(id).catch(() => {});
    } catch (err) {
      if (!abort.signal.aborted) turn('error', `✕ ${err.message}`);
    } finally {
      answer.classList.remove('streaming');
      answer.dataset.done = 'true';
      running = null;
      send.textContent = 'Send';
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (running) return running.abort();
    const prompt = $('prompt').value.trim();
    if (send.dataset.clusterReady === 'false') return turn('error', '✕ the cluster is not ready yet: see the notice above');
    if (prompt) run(prompt);
  });
  $('prompt').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  $('clear').addEventListener('click', () => {
    running?.abort();
    history = [];
    log.innerHTML = `<p class="empty">${esc('Ask something: the answer streams token by token through every peer\u2019s layers.')}</p>`;
    setStats(null, null, null);
    $('stat-trace').textContent = '';
  });
}
