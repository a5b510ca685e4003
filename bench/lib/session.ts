import { Generator, Monitor, type TimePoint, type WindowStats } from './generator.js';
import type { Target } from './targets.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Live progress: one updating line on a terminal, plain lines otherwise (CI logs). */
export class Progress {
  readonly #tty = process.stdout.isTTY === true;
  #open = false;

  line(text: string): void {
    if (this.#tty) {
      const width = process.stdout.columns ?? 120;
      process.stdout.write(`\r${text.slice(0, width - 1)}\x1b[K`);
      this.#open = true;
    } else {
      process.stdout.write(`${text}\n`);
    }
  }

  /** A line that stays (ends the updating one). */
  log(text: string): void {
    if (this.#open) process.stdout.write('\n');
    this.#open = false;
    process.stdout.write(`${text}\n`);
  }

  done(): void {
    if (this.#open) process.stdout.write('\n');
    this.#open = false;
  }
}

export function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  if (a >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (a >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return n.toFixed(digits);
}

export function progressLine(label: string, p: TimePoint): string {
  const errs = Object.values(p.errors).reduce((a, b) => a + b, 0);
  const closes = Object.entries(p.closes)
    .map(([k, v]) => `${k}×${v}`)
    .join(' ');
  return (
    `[${label}${p.phase ? ` ${p.phase}` : ''}] ${p.t.toFixed(0)}s ready ${p.ready}/${p.connected}` +
    ` offered ${fmt(p.offered)}/s sent ${fmt(p.sent)}/s deliv ${fmt(p.deliveries)}/s` +
    ` p50 ${p.latency.p50.toFixed(1)} p99 ${p.latency.p99.toFixed(1)} ms` +
    `${p.heartsSent ? ` hearts ${fmt(p.heartsSent)}/s` : ''}` +
    ` cpu ${p.cpuPercent}% (waited ${p.serverCpuWaitPercent}%) gen ${p.genCpuPercent}% rss ${p.rssMB.toFixed(0)}MB` +
    `${p.serverLoopMax ? ` loop p99 ${p.serverLoopP99} max ${p.serverLoopMax} ms` : ''}` +
    `${errs ? ` err ${errs}` : ''}${closes ? ` closes ${closes}` : ''}`
  );
}

export interface LoadContext {
  gen: Generator;
  mon: Monitor;
  target: Target;
  progress: Progress;
  /**
   * Runs the target at `rate` messages/s (and `hearts`/s) for `seconds`; figures of the seconds after `warmS`.
   * With `stop`, sending stops when the seconds are up, not when the monitor's next tick is in: a tick waits for
   * the server's probe, and a server far behind answers it late, while the generator would go on offering load;
   * a tick is then taken at once, and the figures end with it.
   */
  hold(
    rate: number,
    seconds: number,
    o?: { hearts?: number; warmS?: number; phase?: string; stop?: boolean },
  ): Promise<WindowStats>;
  /** Stops sending and waits until deliveries have (nearly) stopped. */
  drain(maxMs?: number): Promise<void>;
  /**
   * Waits until `viewers` connections have their `init` again (clients cut off by an overloaded server come back
   * by themselves, with `since`), at most `maxMs`: the seconds since `o.from` (a `performance.now()` instant,
   * default the call), or `NaN` if they were not all back. Only ticks that start after `o.after` (monitor time)
   * count.
   */
  rejoin(viewers: number, maxMs: number, o?: { from?: number; after?: number }): Promise<number>;
}

/** Starts the client processes and the once-a-second monitor around `fn`. */
export async function withLoad<T>(
  target: Target,
  o: { workers?: number; label: string; progress: Progress; generator?: Generator; tickMs?: number },
  fn: (ctx: LoadContext) => Promise<T>,
): Promise<{ result: T; series: TimePoint[] }> {
  const gen = o.generator ?? (await Generator.start(o.workers));
  const mon = new Monitor(gen, target, (p) => o.progress.line(progressLine(o.label, p)), o.tickMs);
  mon.start();
  const ctx: LoadContext = {
    gen,
    mon,
    target,
    progress: o.progress,
    async hold(rate, seconds, h = {}) {
      mon.offered = rate;
      if (h.phase !== undefined) mon.phase = h.phase;
      gen.setRates(rate, h.hearts ?? 0);
      const t0 = mon.now();
      await sleep(seconds * 1000);
      if (h.stop) {
        gen.setRates(0, 0);
        mon.offered = 0;
        // The last tick ends at the stop: no second of the figures is partly without load.
        await mon.tickNow();
      } else {
        // The tick that covers the last second must be in.
        await mon.nextTick();
      }
      return mon.window(t0 + (h.warmS ?? 1), mon.now());
    },
    async drain(maxMs = 5000) {
      gen.setRates(0, 0);
      mon.offered = 0;
      const until = performance.now() + maxMs;
      let quiet = 0;
      while (performance.now() < until) {
        const p = await mon.nextTick();
        if (p.deliveries < Math.max(10, p.ready * 0.01)) quiet++;
        else quiet = 0;
        if (quiet >= 1) return;
      }
    },
    async rejoin(viewers, maxMs, o = {}) {
      const started = performance.now();
      const after = o.after ?? Number.NEGATIVE_INFINITY;
      while (performance.now() - started < maxMs) {
        const p = await mon.nextTick();
        if (p.t0 > after && p.ready >= viewers) return (performance.now() - (o.from ?? started)) / 1000;
      }
      return Number.NaN;
    },
  };
  try {
    const result = await fn(ctx);
    await mon.stop();
    return { result, series: mon.points };
  } finally {
    o.progress.done();
    if (o.generator) await gen.reset();
    else await gen.close();
  }
}

export interface RateStep {
  rate: number;
  pass: boolean;
  why: string;
  window: WindowStats;
}

/** The longest a failed step's backlog is waited for before the next step (it ends as soon as deliveries stop). */
const FAILED_STEP_DRAIN_MS = 60_000;

/**
 * Finds the highest message rate a target sustains: doubles from `start` while a step passes, halves while the
 * first fails, then bisects between the last pass and the first failure. A failed step is tried twice (`retry`).
 * Between a failed step and the next the backlog is drained (up to `FAILED_STEP_DRAIN_MS`).
 */
export async function searchRate(
  ctx: LoadContext,
  o: {
    start: number;
    min?: number;
    max?: number;
    stepS: number;
    bisections?: number;
    check: (w: WindowStats, rate: number) => string | null;
    hearts?: (rate: number) => number;
    /** Wait for the backlog to clear at the end (default true). */
    finalDrain?: boolean;
    /** Run a failed step once more before taking its verdict (default true). */
    retry?: boolean;
    /**
     * The viewers connected for the search: after a failed step, those an overloaded server cut off are waited for
     * (up to `FAILED_STEP_DRAIN_MS`) before the next step, which `check` should fail if they are not all back.
     */
    viewers?: number;
  },
): Promise<{ best: RateStep | undefined; steps: RateStep[] }> {
  const steps: RateStep[] = [];
  const min = o.min ?? 1;
  const max = o.max ?? 100_000;
  const once = async (rate: number): Promise<RateStep> => {
    const window = await ctx.hold(rate, o.stepS, { phase: `${fmt(rate)} msg/s`, hearts: o.hearts?.(rate) });
    const why = o.check(window, rate);
    const step = { rate, pass: why === null, why: why ?? 'ok', window };
    steps.push(step);
    // Until the backlog is gone, which takes long after a step the generator could not keep up with (its client
    // processes seconds behind): the next step used to start within 5 s, on top of that backlog, and fail for it
    // (in the run of 14:40 draw-chat's steps after 1,600 msg/s read "the generator sent only 0/s" at 1,131 and
    // 411/s at 951, p99 22 and 37 s; in the run of 14:23 the batched baseline's 1,131 the same way).
    if (!step.pass) await ctx.drain(FAILED_STEP_DRAIN_MS);
    // And until everyone is back: in the run of 08:36 (machine 11) 4,400 of the 5,000 viewers lost their
    // connections in draw-chat's 1,600 msg/s step, its next steps ran with only 720–1,650 of them connected, and
    // the cold storm after the search had 52 still on their way (their resumes read up to 44 s: p99 29.5 s).
    if (!step.pass && o.viewers !== undefined) await ctx.rejoin(o.viewers, FAILED_STEP_DRAIN_MS);
    return step;
  };
  // A step that fails on the server's side runs once more: one stall of a few hundred ms (a disk flush, a core
  // taken by something else on the machine) in its window used to decide a whole search (PostgreSQL ingest read
  // 210 and 421 msg/s in two full runs after failing its first step, 5,660 in the others). Both tries are
  // reported. A generator that could not send the rate is not retried: it would not do better.
  const run = async (rate: number): Promise<RateStep> => {
    const first = await once(rate);
    if (first.pass || o.retry === false || first.why.startsWith('the generator')) return first;
    return once(rate);
  };
  let lo: RateStep | undefined;
  let hi: RateStep | undefined;
  let rate = o.start;
  for (;;) {
    const s = await run(rate);
    if (s.pass) {
      lo = s;
      if (hi || rate * 2 > max) break;
      rate *= 2;
    } else {
      hi = s;
      if (lo || rate / 2 < min) break;
      rate /= 2;
    }
  }
  if (lo && hi) {
    for (let i = 0; i < (o.bisections ?? 2); i++) {
      const mid = Math.round(Math.sqrt(lo.rate * hi.rate));
      if (mid <= lo.rate || mid >= hi.rate) break;
      const s = await run(mid);
      if (s.pass) lo = s;
      else hi = s;
    }
  }
  if (o.finalDrain !== false) await ctx.drain(3000);
  return { best: lo, steps };
}

/** The active session of a draw-chat server. */
export async function activeSessionId(url: string, token: string): Promise<number> {
  const res = await fetch(`${url}/live-chat/status`, { headers: { authorization: `Bearer ${token}` } });
  const body = (await res.json()) as { session?: { id: number } | null };
  if (!body.session) throw new Error(`no active session at ${url}: ${JSON.stringify(body)}`);
  return body.session.id;
}

export async function sessionTotals(
  url: string,
  token: string,
): Promise<{ totalLikes: number; viewers: number }> {
  const res = await fetch(`${url}/live-chat/status`, { headers: { authorization: `Bearer ${token}` } });
  const body = (await res.json()) as { session?: { total_likes: number; viewer_count: number } | null };
  return { totalLikes: body.session?.total_likes ?? 0, viewers: body.session?.viewer_count ?? 0 };
}
