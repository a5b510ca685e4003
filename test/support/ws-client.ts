import WebSocket from 'ws';

export interface ClientOptions {
  origin?: string;
  headers?: Record<string, string>;
  /** Wait for `init` (default) or just for the socket to open or close. */
  waitForInit?: boolean;
}

type Event = { type: string; [k: string]: any };

/**
 * A real `ws` client that records every event. `next(type)` returns the first event of that type not yet
 * taken, waiting for it when needed; so tests read like the protocol.
 */
export class TestClient {
  readonly events: Event[] = [];
  readonly #taken = new Set<number>();
  readonly #waiters = new Set<() => void>();
  readonly closed: Promise<{ code: number; reason: string }>;
  init: Event | undefined;

  private constructor(readonly ws: WebSocket) {
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        this.#wake();
      });
    });
    ws.on('error', () => {});
    ws.on('message', (data) => {
      const parsed = JSON.parse(data.toString());
      for (const e of Array.isArray(parsed) ? parsed : [parsed]) this.events.push(e);
      this.#wake();
    });
  }

  static async connect(url: string, options: ClientOptions = {}): Promise<TestClient> {
    const ws = new WebSocket(url, {
      headers: options.headers,
      ...(options.origin ? { origin: options.origin } : {}),
    });
    const client = new TestClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) =>
        reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)),
      );
      ws.once('error', reject);
    });
    if (options.waitForInit !== false) {
      const first = await Promise.race([client.next('init'), client.closed.then(() => undefined)]);
      if (!first) throw new Error(`closed before init: ${JSON.stringify(await client.closed)}`);
      client.init = first;
    }
    return client;
  }

  send(data: unknown): void {
    this.ws.send(typeof data === 'string' ? data : JSON.stringify(data));
  }

  /** The next untaken event of `type` (and matching `where`), waiting up to `timeoutMs`. */
  async next(type: string, where: (e: Event) => boolean = () => true, timeoutMs = 5000): Promise<Event> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.events.findIndex((e, idx) => !this.#taken.has(idx) && e.type === type && where(e));
      if (i >= 0) {
        this.#taken.add(i);
        return this.events[i]!;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `no ${type} event within ${timeoutMs} ms; got ${JSON.stringify(this.events.map((e) => e.type))}`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, left);
        function done() {
          clearTimeout(t);
          resolve();
        }
        this.#waiters.add(done);
      });
    }
  }

  /** Waits until `type` events satisfy `until`, returning all of them. */
  async collect(type: string, until: (events: Event[]) => boolean, timeoutMs = 5000): Promise<Event[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const list = this.events.filter((e) => e.type === type);
      if (until(list)) return list;
      if (Date.now() > deadline) throw new Error(`collect(${type}) timed out with ${list.length} events`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Latest value of a coalesced count, once it satisfies `until`. */
  async count(type: string, field: string, until: (n: number) => boolean, timeoutMs = 5000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const last = this.events.filter((e) => e.type === type).at(-1);
      if (last && until(last[field])) return last[field];
      if (Date.now() > deadline)
        throw new Error(`${type}.${field} never satisfied; last ${JSON.stringify(last)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  messages(): any[] {
    return this.events.filter((e) => e.type === 'new_message').map((e) => e.message);
  }

  close(code = 1000): void {
    this.ws.close(code);
  }

  terminate(): void {
    this.ws.terminate();
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
    this.#waiters.clear();
  }
}
