import type { Redis } from 'ioredis';

interface Watched {
  readonly name: string;
  readonly client: Redis;
  /** Bumped on every ready and every verdict: a verdict prepared on an earlier connection is not this one's. */
  epoch: number;
  /** Chunks of data this connection has received (anything Redis sends: replies, PONGs, pub/sub messages). */
  received: number;
  /** When the PING now awaited was sent (monotonic ms); undefined: none awaited. */
  pingedAt: number | undefined;
  /** `received` when it was sent: the connection has heard from Redis since iff `received` moved. */
  receivedAtPing: number;
}

/**
 * How often each ready connection is looked at (and sent a PING when it has heard something since the last), and
 * how long one that has heard nothing after a PING may stay silent: a hang is noticed within about 2 to 2.5 s.
 */
const WATCHDOG_EVERY_MS = 500;
const WATCHDOG_SILENT_MS = 2_000;

/**
 * Notices a Redis that stops answering without closing its connections (a process stopped or stuck, a network
 * that drops packets): ioredis sees such a connection as `ready` for as long as the kernel keeps it, so nothing
 * falls back and everything that asks Redis waits. Each ready connection is sent a PING about every `everyMs`; one
 * that has received nothing at all for `silentMs` after a PING has its socket destroyed, and ioredis reconnects
 * it (its retry strategy), which every user of the connection reads as Redis being away: the bus serves this node
 * only and catches up when it is back, the limits fall back to the node's own, readiness says `degraded`.
 * ioredis's own `socketTimeout` only watches a connection while it has commands out: a subscriber that is sent
 * nothing is never watched.
 *
 * The watchdog counts what arrives on the socket rather than waiting for the PING's reply: a command timeout
 * (`commandTimeout`) may fail the PING before a late event loop reads its reply. And the verdict waits for a
 * `setImmediate` after the timer: an event loop that was busy for seconds (a heart storm) reads what came
 * meanwhile in its poll phase, before that, so a late loop is not taken for a silent Redis.
 */
export class RedisWatchdog {
  readonly #watched: Watched[];
  readonly #timer: NodeJS.Timeout;
  #stopped = false;

  /** `onHang`: a connection was taken for hung; its socket is destroyed right after (ioredis then reconnects). */
  constructor(
    clients: Record<string, Redis>,
    private readonly onHang: (name: string, silentMs: number) => void,
  ) {
    this.#watched = Object.entries(clients).map(([name, client]) => {
      const w: Watched = { name, client, epoch: 0, received: 0, pingedAt: undefined, receivedAtPing: 0 };
      client.on('ready', () => {
        w.epoch++;
        w.pingedAt = undefined;
        // A new socket on every (re)connect.
        client.stream.on('data', () => {
          w.received++;
        });
      });
      return w;
    });
    this.#timer = setInterval(() => this.#tick(), WATCHDOG_EVERY_MS);
    this.#timer.unref();
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
  }

  #tick(): void {
    const now = performance.now();
    const suspects: Array<{ w: Watched; epoch: number; pingedAt: number }> = [];
    for (const w of this.#watched) {
      if (w.client.status !== 'ready') continue;
      if (w.pingedAt !== undefined && w.received === w.receivedAtPing) {
        if (now - w.pingedAt >= WATCHDOG_SILENT_MS)
          suspects.push({ w, epoch: w.epoch, pingedAt: w.pingedAt });
        continue;
      }
      w.pingedAt = now;
      w.receivedAtPing = w.received;
      // Its reply is counted as data; a failure (refused, timed out) is no answer, and the silence goes on.
      w.client.ping().catch(() => {});
    }
    if (suspects.length === 0) return;
    setImmediate(() => {
      for (const { w, epoch, pingedAt } of suspects) {
        // Heard from in the poll phase just gone, or reconnected meanwhile: not hung.
        if (this.#stopped || w.epoch !== epoch || w.received !== w.receivedAtPing) continue;
        if (w.client.status !== 'ready') continue;
        w.epoch++;
        w.pingedAt = undefined;
        this.onHang(w.name, Math.round(performance.now() - pingedAt));
        // Not `disconnect(true)`: that half-closes and waits (up to its disconnectTimeout) for a peer that is not
        // answering to close its side. A destroyed socket closes now, and ioredis reconnects.
        w.client.stream.destroy();
      }
    });
  }
}
