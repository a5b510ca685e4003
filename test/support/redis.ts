import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';

/** Redis for tests: `TEST_REDIS_URL` (default redis://127.0.0.1:6379); required under CI=true. */
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export async function redisAvailable(url = TEST_REDIS_URL): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 2000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
    return true;
  } catch (err) {
    if (process.env.CI === 'true') {
      throw new Error(`Redis is required under CI=true but is not reachable at ${url}: ${err}`);
    }
    return false;
  } finally {
    client.disconnect();
  }
}

/** A key prefix of its own, so test files sharing one Redis never hear each other. */
export function uniquePrefix(): string {
  return `drawchat-test-${randomBytes(5).toString('hex')}:`;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * `count` consecutive free ports, the first returned. Taken below the kernel's ephemeral range: a port from
 * `freePort()` (or its neighbour) can be handed to any outgoing connection or port-0 listener of a parallel test
 * between the check and its use (the cluster test's second node once failed with EADDRINUSE that way); ports
 * below that range are only ever taken by explicit binds.
 */
export async function freePortRun(count: number): Promise<number> {
  let low = 32_768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    // Not Linux: the IANA ephemeral range starts at 49152; 32768 is below it too.
  }
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = 10_000 + Math.floor(Math.random() * (low - 10_000 - count));
    let free = true;
    for (let port = base; free && port < base + count; port++) free = await canListen(port);
    if (free) return base;
  }
  throw new Error(`no run of ${count} free ports below ${low}`);
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A private redis-server on its own port, which a test may kill and start again. */
export class PrivateRedis {
  #child: ChildProcess | undefined;

  /** Runs `fn` on a connection of its own that does not retry (it fails at once while the server is down). */
  async ask<T>(fn: (client: Redis) => Promise<T>): Promise<T> {
    const client = new Redis(this.url, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    client.on('error', () => {});
    try {
      await client.connect();
      return await fn(client);
    } finally {
      client.disconnect();
    }
  }

  private constructor(readonly port: number) {}

  static async start(): Promise<PrivateRedis> {
    const r = new PrivateRedis(await freePort());
    await r.start();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.#child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      {
        stdio: 'ignore',
      },
    );
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      try {
        await this.ask((client) => client.ping());
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    throw new Error(`redis-server did not start on port ${this.port}`);
  }

  /**
   * SIGSTOP: the server hangs without closing anything, like a Redis stuck on a slow disk or a network that drops
   * packets. The kernel still accepts new connections for it; nothing is answered until `resume()`.
   */
  pause(): void {
    this.#signal('SIGSTOP');
  }

  /** SIGCONT: a paused server answers again, everything it was sent meanwhile included. */
  resume(): void {
    this.#signal('SIGCONT');
  }

  #signal(signal: NodeJS.Signals): void {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null)
      throw new Error('redis-server is not running');
    child.kill(signal);
  }

  /** SIGKILL: no goodbye to the clients, like a crash. */
  async kill(): Promise<void> {
    const child = this.#child;
    // Killed by a signal, a child has no exit code but a signal code (and no second 'exit' to wait for).
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
}
