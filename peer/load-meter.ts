// Tokens per second through this peer's layers, over a short sliding window: what the dashboard and
// `status --watch` show per peer. Pure: the caller passes the clock.

export class LoadMeter {
  private readonly samples: Array<[number, number]> = [];

  constructor(private readonly windowMs = 2000) {}

  /** `tokens` positions went through our layers at time `at` (ms). */
  add(tokens: number, at: number): void {
    this.samples.push([at, tokens]);
    this.trim(at);
  }

  /** Tokens per second over the window ending at `at`. */
  rate(at: number): number {
    this.trim(at);
    const total = this.samples.reduce((sum, [, n]) => sum + n, 0);
    return Math.round((total / (this.windowMs / 1000)) * 10) / 10;
  }

  private trim(at: number): void {
    while (this.samples.length && this.samples[0][0] <= at - this.windowMs) this.samples.shift();
  }
}
