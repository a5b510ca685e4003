import type { BackoffOptions } from './types.js';

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({
  initialMs: 500,
  maxMs: 15_000,
  factor: 2,
  jitter: 0.5,
});

/**
 * Delay before reconnect attempt `attempt` (1 = first): exponential, capped at `maxMs`, minus a random share of
 * up to `jitter`, so a crowd dropped at the same moment (a server restart) does not come back at the same moment.
 */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number): number {
  const exponent = Math.max(0, attempt - 1);
  const base = Math.min(options.maxMs, options.initialMs * options.factor ** exponent);
  const jitter = Math.min(1, Math.max(0, options.jitter));
  return Math.round(base * (1 - jitter * random()));
}
