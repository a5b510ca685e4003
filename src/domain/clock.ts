/** The only source of "now" for domain and service code, so tests move time instead of waiting for it. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Called after the clock jumps (manual clocks only); lets schedulers re-check at once. */
  onJump?(listener: () => void): () => void;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock that stands still until told to move. For tests and for the `--clock` override of e2e servers. */
export class ManualClock implements Clock {
  #now: number;
  readonly #listeners = new Set<() => void>();

  constructor(start: number | Date | string = Date.now()) {
    this.#now = typeof start === 'number' ? start : new Date(start).getTime();
  }

  now(): number {
    return this.#now;
  }

  set(instant: number | Date | string): void {
    this.#now = typeof instant === 'number' ? instant : new Date(instant).getTime();
    for (const listener of [...this.#listeners]) listener();
  }

  advance(ms: number): void {
    this.set(this.#now + ms);
  }

  onJump(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
