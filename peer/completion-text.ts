// The text of one completion as it grows piece by piece (from the origin's streaming detokenizer):
// ends it at the first stop string, and holds back what might still change — the start of a stop
// string, or a partial UTF-8 character — so the client never receives text it must take back.
// Every check looks only at the new piece and a stop string's length before it: constant per token.

/** Longest suffix of `text` that is a prefix of some stop string: held back until it resolves. */
export function stopHoldback(text: string, stops: readonly string[]): number {
  let hold = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > hold; n--) {
      if (text.endsWith(s.slice(0, n))) {
        hold = n;
        break;
      }
    }
  }
  return hold;
}

export class CompletionText {
  text = '';
  /** True once a stop string ended the text (the stop string itself is not part of it). */
  stopped = false;
  private emitted = 0;

  constructor(
    private readonly stops: readonly string[],
    private readonly onText: (piece: string) => void,
  ) {}

  /** Adds a piece of final text; returns true when a stop string ended the completion. */
  push(piece: string): boolean {
    if (this.stopped || !piece) return this.stopped;
    const from = this.text.length;
    this.text += piece;
    let stopAt = -1;
    for (const s of this.stops) {
      const i = this.text.indexOf(s, Math.max(0, from - s.length + 1));
      if (i >= 0 && (stopAt < 0 || i < stopAt)) stopAt = i;
    }
    if (stopAt >= 0) {
      this.text = this.text.slice(0, stopAt);
      this.stopped = true;
      this.flush();
      return true;
    }
    let safe = this.text.length - stopHoldback(this.text, this.stops);
    while (safe > this.emitted && this.text.charCodeAt(safe - 1) === 0xfffd) safe--;
    if (safe > this.emitted) {
      this.onText(this.text.slice(this.emitted, safe));
      this.emitted = safe;
    }
    return false;
  }

  /** Sends whatever is still held back (the completion is over). */
  flush(): void {
    if (this.text.length > this.emitted) this.onText(this.text.slice(this.emitted));
    this.emitted = this.text.length;
  }
}
