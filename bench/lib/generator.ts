import { type ChildProcess, spawn } from 'node:child_process';
import { cpus } from 'node:os';
import { addEncoded, type LatencySummary, newHistogram, summary } from './hist.js';
import type { ClientSpec, FinalStats, FromWorker, TickStats, ToWorker } from './protocol.js';
import { procSample, ROOT, sampleTarget, type Target } from './targets.js';

interface Waiter {
  type: FromWorker['type'];
  resolve(m: FromWorker): void;
  reject(err: Error): void;
}

export interface ConnectPlan {
  viewers: number;
  /** Of the viewers, this many send messages (light clients). */
  senders: number;
  /** Share of viewers that are full clients (0..1). */
  fullShare: number;
  /** Share of light viewers that record latency (0..1). */
  sampleShare: number;
  /** draw-chat: array frames (`batch=1`) or one event per frame. */
  batch: boolean;
  /** Handshakes in flight per client process. */
  concurrency: number;
  tokens?: string[];
  /** First user index (to add viewers to a running test). */
  offset?: number;
  /** A handshake not settled after this long fails as `timeout` (ms; default 30 s). */
  timeoutMs?: number;
}

export interface ConnectResult {
  ok: number;
  failed: number;
  elapsedMs: number;
  /** Completed handshakes per second over the whole connect phase. */
  perSecond: number;
  failures: Record<string, number>;
}

/**
 * The load generator's coordinator: spreads simulated clients over child processes (so the generator is not
 * the bottleneck it measures: each has its own event loop, heap and file-descriptor limit), tells them what to
 * do, and merges what they measured once a second.
 */
export class Generator {
  readonly #workers: ChildProcess[];
  readonly #waiters = new Map<ChildProcess, Waiter[]>();
  /** Per client process, its senders and its hearters (light viewers that are not senders): what `setRates` splits by. */
  readonly #dealt: Array<{ senders: number; hearters: number }>;

  private constructor(workers: ChildProcess[]) {
    this.#workers = workers;
    this.#dealt = workers.map(() => ({ senders: 0, hearters: 0 }));
    for (const w of workers) {
      const list: Waiter[] = [];
      this.#waiters.set(w, list);
      w.on('message', (m: FromWorker) => {
        if (m.type === 'log') {
          process.stderr.write(`${m.line}\n`);
          return;
        }
        const i = list.findIndex((x) => x.type === m.type);
        if (i >= 0) list.splice(i, 1)[0]!.resolve(m);
      });
      w.on('exit', (code) => {
        for (const x of list.splice(0)) x.reject(new Error(`load generator process exited (${code})`));
      });
    }
  }

  static defaultWorkers(): number {
    return Math.max(1, Math.min(4, cpus().length));
  }

  static async start(count = Generator.defaultWorkers()): Promise<Generator> {
    const workers: ChildProcess[] = [];
    // BENCH_GENERATOR_PROF=<dir>: CPU profiles of the client processes (is the generator the bottleneck?).
    const prof = process.env.BENCH_GENERATOR_PROF;
    const profArgs = prof ? ['--cpu-prof', '--cpu-prof-dir', prof] : [];
    for (let i = 0; i < count; i++) {
      workers.push(
        spawn(process.execPath, [...profArgs, '--import', 'tsx', 'bench/lib/worker.ts'], {
          cwd: ROOT,
          env: { ...process.env, BENCH_WORKER_ID: String(i) },
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        }),
      );
    }
    const gen = new Generator(workers);
    // Loaded and listening (tsx compiles the client code first): connect timings start after this.
    await Promise.all(workers.map((w) => gen.#expect(w, 'ready')));
    return gen;
  }

  get pids(): number[] {
    return [process.pid, ...this.#workers.map((w) => w.pid!).filter(Boolean)];
  }

  get size(): number {
    return this.#workers.length;
  }

  #expect<T extends FromWorker['type']>(w: ChildProcess, type: T): Promise<Extract<FromWorker, { type: T }>> {
    return new Promise((resolve, reject) => {
      if (w.exitCode !== null) return reject(new Error('load generator process is gone'));
      this.#waiters.get(w)!.push({ type, resolve: resolve as (m: FromWorker) => void, reject });
    });
  }

  #all<T extends FromWorker['type']>(
    cmd: ToWorker,
    type: T,
  ): Promise<Array<Extract<FromWorker, { type: T }>>> {
    const replies = this.#workers.map((w) => this.#expect(w, type));
    for (const w of this.#workers) w.send(cmd);
    return Promise.all(replies);
  }

  async connect(target: Target, plan: ConnectPlan): Promise<ConnectResult> {
    const offset = plan.offset ?? 0;
    const perWorker: ClientSpec[][] = this.#workers.map(() => []);
    const fullEvery = plan.fullShare > 0 ? Math.max(1, Math.round(1 / plan.fullShare)) : 0;
    const sampleEvery = plan.sampleShare > 0 ? Math.max(1, Math.round(1 / plan.sampleShare)) : 0;
    // Each kind of client is dealt round the workers on its own: dealing them all by `k % workers` put every full
    // client (k = 49, 99, 149… are all odd) on one worker and every latency sample (k = 0, 10, 20…) on the other,
    // so one process did all the schema checking while the other measured latency.
    const dealt = new Map<string, number>();
    for (let k = 0; k < plan.viewers; k++) {
      const index = offset + k;
      const sender = k < plan.senders;
      const full = !sender && fullEvery > 0 && k % fullEvery === fullEvery - 1;
      const sample = !full && sampleEvery > 0 && k % sampleEvery === 0;
      const kind = `${sender}${full}${sample}`;
      const n = dealt.get(kind) ?? 0;
      dealt.set(kind, n + 1);
      const to = n % this.#workers.length;
      perWorker[to]!.push({ index, token: plan.tokens?.[k], full, sender, sample });
      if (sender) this.#dealt[to]!.senders++;
      else if (!full) this.#dealt[to]!.hearters++;
    }
    const wire = {
      kind: target.kind,
      urls: target.urls,
      sessionId: target.sessionId,
      batch: plan.batch,
    };
    const started = performance.now();
    const replies = await Promise.all(
      this.#workers.map((w, i) => {
        const reply = this.#expect(w, 'connected');
        w.send({
          cmd: 'connect',
          wire,
          clients: perWorker[i]!,
          concurrency: plan.concurrency,
          timeoutMs: plan.timeoutMs ?? 30_000,
        } satisfies ToWorker);
        return reply;
      }),
    );
    const elapsedMs = performance.now() - started;
    const failures: Record<string, number> = {};
    for (const r of replies)
      for (const [k, v] of Object.entries(r.failures)) failures[k] = (failures[k] ?? 0) + v;
    const ok = replies.reduce((n, r) => n + r.ok, 0);
    return {
      ok,
      failed: replies.reduce((n, r) => n + r.failed, 0),
      elapsedMs,
      perSecond: ok / (elapsedMs / 1000),
      failures,
    };
  }

  /**
   * The offered rates, split over the client processes by what each was dealt: a process without senders sends
   * no messages, so an even split lost its share of the rate (`--senders 1` over two processes sent half).
   */
  setRates(messages: number, hearts = 0): void {
    const senders = this.#dealt.reduce((n, d) => n + d.senders, 0);
    const hearters = this.#dealt.reduce((n, d) => n + d.hearters, 0);
    const n = this.#workers.length;
    this.#workers.forEach((w, i) => {
      const d = this.#dealt[i]!;
      w.send({
        cmd: 'rates',
        messages: senders > 0 ? (messages * d.senders) / senders : messages / n,
        hearts: hearters > 0 ? (hearts * d.hearters) / hearters : hearts / n,
      } satisfies ToWorker);
    });
  }

  async tick(): Promise<TickStats[]> {
    return (await this.#all({ cmd: 'tick' }, 'tick')).map((r) => r.stats);
  }

  async drop(jitterMs: number): Promise<void> {
    await this.#all({ cmd: 'drop', jitterMs }, 'dropped');
  }

  async final(): Promise<FinalStats> {
    const all = (await this.#all({ cmd: 'final' }, 'final')).map((r) => r.stats);
    const withFull = all.filter((s) => s.fullClients > 0);
    return {
      fullClients: sum(all, 'fullClients'),
      invalidEvents: sum(all, 'invalidEvents'),
      orderViolations: sum(all, 'orderViolations'),
      fullReceivedMin: withFull.length ? Math.min(...withFull.map((s) => s.fullReceivedMin)) : 0,
      fullReceivedMax: withFull.length ? Math.max(...withFull.map((s) => s.fullReceivedMax)) : 0,
      likeUpdatesMaxPerSecond: Math.max(0, ...all.map((s) => s.likeUpdatesMaxPerSecond)),
      likeUpdatesMaxAvgPerSecond: Math.max(0, ...all.map((s) => s.likeUpdatesMaxAvgPerSecond)),
      likeUpdatesReceivedMax: Math.max(0, ...all.map((s) => s.likeUpdatesReceivedMax)),
      likeUpdateWindowS: Math.max(0, ...all.map((s) => s.likeUpdateWindowS)),
      heartsSent: sum(all, 'heartsSent'),
      heartsRefused: sum(all, 'heartsRefused'),
      sent: sum(all, 'sent'),
      acked: sum(all, 'acked'),
    };
  }

  /** Closes every simulated client; the processes stay for the next target. */
  async reset(): Promise<void> {
    await this.#all({ cmd: 'reset' }, 'reset');
  }

  async close(): Promise<void> {
    await Promise.all(
      this.#workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.exitCode !== null) return resolve();
            const timer = setTimeout(() => w.kill('SIGKILL'), 5000);
            w.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            try {
              w.send({ cmd: 'close' } satisfies ToWorker);
            } catch {
              w.kill('SIGKILL');
            }
          }),
      ),
    );
  }
}

function sum<T>(list: T[], key: keyof T): number {
  return list.reduce((n, s) => n + (s[key] as number), 0);
}

// ------------------------------------------------------------------ per-second recording

/** One tick of a run (about a second), summed over client processes; counts are per second. */
export interface TimePoint {
  /** Seconds since the run started, at the end of the tick. */
  t: number;
  /** When the figures were asked for (the client processes answer in order of the commands they got). */
  t0: number;
  /** Length of the tick, s. */
  dt: number;
  phase: string;
  deliveries: number;
  frames: number;
  bytes: number;
  sent: number;
  acked: number;
  heartsSent: number;
  likeUpdates: number;
  connected: number;
  ready: number;
  resumed: number;
  errors: Record<string, number>;
  closes: Record<string, number>;
  /** Delivery latency of that second (ms). */
  latency: LatencySummary;
  ack: LatencySummary;
  /** Server CPU over that second, % of one core (all nodes). */
  cpuPercent: number;
  rssMB: number;
  /** The load generator's own CPU over that second (all its processes), % of one core. */
  genCpuPercent: number;
  /** Time the server's main thread was ready to run but waited for a CPU (other work on the machine), %. */
  serverCpuWaitPercent: number;
  /** The server's event-loop delay over the tick (ms; draw-chat with the probe only, else 0). */
  serverLoopP99: number;
  serverLoopMax: number;
  /** Messages per second the generator was asked to send. */
  offered: number;
}

interface RawTick {
  t: number;
  latency: string[];
  ack: string[];
  connect: string[];
}

export interface WindowStats {
  seconds: number;
  deliveriesPerSecond: number;
  sentPerSecond: number;
  ackedPerSecond: number;
  heartsPerSecond: number;
  framesPerSecond: number;
  bytesPerSecond: number;
  latency: LatencySummary;
  ack: LatencySummary;
  connect: LatencySummary;
  cpuPercent: number;
  genCpuPercent: number;
  /** Share of time the server's main thread waited for a CPU while runnable (%). */
  serverCpuWaitPercent: number;
  /** Worst per-tick event-loop delay p99 and max of the server (ms; 0 without the probe). */
  serverLoopP99: number;
  serverLoopMax: number;
  rssMB: number;
  /** Mean connections that had their `init`. */
  ready: number;
  errors: Record<string, number>;
  closes: Record<string, number>;
  resumed: number;
}

/**
 * Drives the once-a-second tick: asks every client process for its figures, samples the server's CPU and RSS,
 * keeps the series for the report and prints a live progress line.
 */
export class Monitor {
  readonly points: TimePoint[] = [];
  readonly #raw: RawTick[] = [];
  readonly #started = performance.now();
  #timer: NodeJS.Timeout | undefined;
  #lastCpu: { at: number; cpu: number; gen: number; wait: number } | undefined;
  #busy = false;
  #lastTickAt = performance.now();
  phase = '';
  offered = 0;
  readonly #allLatency = newHistogram();

  constructor(
    private readonly gen: Generator,
    private readonly target: Target,
    private readonly progress: (p: TimePoint, m: Monitor) => void = () => {},
    private readonly intervalMs = 1000,
  ) {}

  start(): void {
    void this.#sampleCpu();
    this.#lastTickAt = performance.now();
    this.#timer = setInterval(() => void this.#tick(), this.intervalMs);
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    while (this.#busy) await new Promise((r) => setTimeout(r, 20));
    await this.#tick();
  }

  /** Seconds since start. */
  now(): number {
    return (performance.now() - this.#started) / 1000;
  }

  async #sampleCpu(): Promise<{
    cpuPercent: number;
    rssMB: number;
    genCpuPercent: number;
    waitPercent: number;
  }> {
    const s = await sampleTarget(this.target);
    const g = procSample(this.gen.pids);
    const at = performance.now();
    const prev = this.#lastCpu;
    this.#lastCpu = { at, cpu: s.cpuSeconds, gen: g.cpuSeconds, wait: s.waitSeconds };
    const secs = prev ? (at - prev.at) / 1000 : 1;
    return {
      cpuPercent: prev ? ((s.cpuSeconds - prev.cpu) / secs) * 100 : 0,
      waitPercent: prev ? ((s.waitSeconds - prev.wait) / secs) * 100 : 0,
      genCpuPercent: prev ? ((g.cpuSeconds - prev.gen) / secs) * 100 : 0,
      rssMB: s.rssBytes / 1024 / 1024,
    };
  }

  async #tick(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const t0 = Math.round(this.now() * 100) / 100;
      const [stats, proc, probe] = await Promise.all([
        this.gen.tick(),
        this.#sampleCpu(),
        this.target.probe?.().catch(() => undefined),
      ]);
      const at = performance.now();
      const dt = Math.max((at - this.#lastTickAt) / 1000, 0.001);
      this.#lastTickAt = at;
      const t = Math.round(this.now() * 100) / 100;
      const rate = (k: keyof TickStats) => Math.round((sumOf(stats, k) / dt) * 10) / 10;
      const lat = newHistogram();
      const ack = newHistogram();
      for (const s of stats) {
        addEncoded(lat, s.latency);
        addEncoded(ack, s.ack);
      }
      this.#allLatency.add(lat);
      const point: TimePoint = {
        t,
        t0,
        dt: Math.round(dt * 1000) / 1000,
        phase: this.phase,
        deliveries: rate('deliveries'),
        frames: rate('frames'),
        bytes: rate('bytes'),
        sent: rate('sent'),
        acked: rate('acked'),
        heartsSent: rate('heartsSent'),
        likeUpdates: rate('likeUpdates'),
        connected: sumOf(stats, 'connected'),
        ready: sumOf(stats, 'ready'),
        resumed: sumOf(stats, 'resumed'),
        errors: mergeCounts(stats.map((s) => s.errors)),
        closes: mergeCounts(stats.map((s) => s.closes)),
        latency: summary(lat),
        ack: summary(ack),
        cpuPercent: Math.round(proc.cpuPercent),
        rssMB: Math.round(proc.rssMB * 10) / 10,
        genCpuPercent: Math.round(proc.genCpuPercent),
        serverCpuWaitPercent: Math.round(proc.waitPercent),
        serverLoopP99: probe?.loop.p99 ?? 0,
        serverLoopMax: probe?.loop.max ?? 0,
        offered: this.offered,
      };
      this.points.push(point);
      this.#raw.push({
        t,
        latency: stats.map((s) => s.latency),
        ack: stats.map((s) => s.ack),
        connect: stats.map((s) => s.connect),
      });
      this.progress(point, this);
    } finally {
      this.#busy = false;
    }
  }

  /** Figures over the ticks that ended in (from, to] (seconds since start), per second. */
  window(from: number, to: number): WindowStats {
    const pts = this.points.filter((p) => p.t > from && p.t <= to + 0.05);
    const raw = this.#raw.filter((p) => p.t > from && p.t <= to + 0.05);
    const lat = newHistogram();
    const ack = newHistogram();
    const con = newHistogram();
    for (const r of raw) {
      for (const e of r.latency) addEncoded(lat, e);
      for (const e of r.ack) addEncoded(ack, e);
      for (const e of r.connect) addEncoded(con, e);
    }
    const seconds = pts.reduce((n, p) => n + p.dt, 0);
    const per = (k: keyof TimePoint) =>
      seconds > 0 ? pts.reduce((n, p) => n + (p[k] as number) * p.dt, 0) / seconds : 0;
    return {
      seconds,
      deliveriesPerSecond: per('deliveries'),
      sentPerSecond: per('sent'),
      ackedPerSecond: per('acked'),
      heartsPerSecond: per('heartsSent'),
      framesPerSecond: per('frames'),
      bytesPerSecond: per('bytes'),
      latency: summary(lat),
      ack: summary(ack),
      connect: summary(con),
      cpuPercent: per('cpuPercent'),
      genCpuPercent: per('genCpuPercent'),
      serverCpuWaitPercent: per('serverCpuWaitPercent'),
      serverLoopP99: pts.length ? Math.max(...pts.map((p) => p.serverLoopP99)) : 0,
      serverLoopMax: pts.length ? Math.max(...pts.map((p) => p.serverLoopMax)) : 0,
      ready: per('ready'),
      rssMB: pts.length ? Math.max(...pts.map((p) => p.rssMB)) : 0,
      errors: mergeCounts(pts.map((p) => p.errors)),
      closes: mergeCounts(pts.map((p) => p.closes)),
      resumed: pts.reduce((n, p) => n + p.resumed, 0),
    };
  }

  /** Delivery latency over the whole run. */
  overall(): LatencySummary {
    return summary(this.#allLatency);
  }

  /**
   * Takes a tick now, or waits for the one in flight: a phase that stops sending ends its figures here, so that its
   * last tick is not a second of which only a part had load.
   */
  async tickNow(): Promise<TimePoint> {
    if (this.#busy) return this.nextTick();
    await this.#tick();
    return this.points.at(-1)!;
  }

  /** Waits until the next tick has been recorded. */
  async nextTick(): Promise<TimePoint> {
    const n = this.points.length;
    while (this.points.length === n) await new Promise((r) => setTimeout(r, 20));
    return this.points.at(-1)!;
  }
}

function sumOf(list: TickStats[], key: keyof TickStats): number {
  return list.reduce((n, s) => n + (s[key] as number), 0);
}

export function mergeCounts(list: Array<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of list) for (const [k, v] of Object.entries(m)) out[k] = (out[k] ?? 0) + v;
  return out;
}
