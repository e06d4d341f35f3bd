// Server-sent events from a response body: one parser for every client of the API's streams
// (completions, the dashboard stream), yielding each event's name and its joined `data:` lines.
export interface SseEvent {
  event: string;
  data: string;
}

export async function* sseEvents(body: NonNullable<Response['body']>): AsyncGenerator<SseEvent> {
  let buffer = '';
  for await (const chunk of body.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = [...block.matchAll(/^data: ?(.*)$/gm)].map((m) => m[1]).join('\n');
      if (data) yield { event: /^event: ?(.*)$/m.exec(block)?.[1] ?? 'message', data };
    }
  }
}
