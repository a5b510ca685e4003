import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ROOT } from '../support/process.js';
import { TestClient } from '../support/ws-client.js';
import {
  devTokens,
  encodeFrame,
  expectNoSecretsLogged,
  killHard,
  metric,
  type NodeProcess,
  RawWs,
  sleep,
  spawnNode,
  startNode,
  within,
} from './support.js';

// Issue 6, frames: what no well-behaved client sends, written byte by byte on a raw TCP socket, against a real
// server process whose own memory and file descriptors are measured (after forced GCs, by the test probe).

const MiB = 1024 * 1024;
let dir: string;
let proc: NodeProcess;
let url: string;
let wsBase: string;
let token: string;
let sid: number;
let mint: (name: string) => Promise<string>;
let idle: RawWs[] = [];
let idleSince = 0;
/** How long each of `idle` lived after its HTTP answer, in ms (recorded as it happens). */
let idleEnded: Array<Promise<number>> = [];

const wsUrl = (t = token, extra = '') => `${wsBase}/live-chat/ws/${sid}?token=${t}${extra}`;

/** A raw socket that has its `init`: the server is past auth, so every frame below reaches the frame handler. */
async function rawReady(t = token): Promise<RawWs> {
  const raw = await RawWs.open(wsUrl(t));
  expect(raw.status).toBe(101);
  const deadline = Date.now() + 5000;
  while (!raw.events().some((e) => e.type === 'init')) {
    if (Date.now() > deadline) throw new Error('no init on the raw socket');
    await sleep(5);
  }
  return raw;
}

/** A well-behaved client still gets served: the process is alive and answers. */
async function stillServing(): Promise<void> {
  const health = await fetch(`${url}/healthz`);
  expect(health.status).toBe(200);
  const c = await TestClient.connect(wsUrl(await mint(`witness-${Date.now()}`)));
  c.send({ type: 'ping' });
  await c.next('pong');
  c.close();
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'drawchat-frames-'));
  mint = await devTokens(dir);
  proc = spawnNode({
    DATABASE_URL: `sqlite:${dir}/chat.db`,
    DATA_DIR: dir,
    LOG_LEVEL: 'info',
    LIVE_CHAT_MAX_CONNECTS_PER_ADDRESS_PER_MINUTE: '100000',
    LIVE_CHAT_MAX_CONNECTIONS_PER_USER: '100',
  });
  url = await proc.url;
  wsBase = url.replace(/^http/, 'ws');
  token = await mint('framer');
  const status = await (
    await fetch(`${url}/live-chat/status`, { headers: { authorization: `Bearer ${token}` } })
  ).json();
  sid = (status as any).session.id;
  // Warm up: the first sockets pay for JIT and pools; the memory figures below compare warm states.
  for (let i = 0; i < 20; i++) (await TestClient.connect(wsUrl())).close();
  // For H-FRAME-12, which checks at the end of the file that these went away by themselves.
  idleSince = Date.now();
  idle = await Promise.all(
    Array.from({ length: 500 }, (_, i) =>
      RawWs.open(i % 2 ? `${wsBase}/nope` : `${wsBase}/live-chat/ws/${'9'.repeat(400)}`),
    ),
  );
  idleEnded = idle.map((r) => r.ended.then(() => r.endedAt! - r.openedAt));
});

afterAll(async () => {
  if (proc) {
    proc.child.kill('SIGTERM');
    await within(proc.exited, 20_000, 'process exit').catch(() => killHard(proc));
  }
  expectNoSecretsLogged();
  rmSync(dir, { recursive: true, force: true });
});

describe('frames (issue 6)', () => {
  it('[H-FRAME-01] ws ≥ 8.23 is installed and the server sets its limits explicitly: maxPayload 16 KiB, maxFragments 64, maxBufferedChunks 4096, closeTimeout 5 s, no permessage-deflate', async () => {
    const require = createRequire(import.meta.url);
    const version: string = require('ws/package.json').version;
    const [major, minor] = version.split('.').map(Number);
    expect(major).toBe(8);
    expect(minor).toBeGreaterThanOrEqual(23);
    // The copy @fastify/websocket loads is the same one (no nested, older ws).
    const fromPlugin = createRequire(require.resolve('@fastify/websocket'))('ws/package.json').version;
    expect(fromPlugin).toBe(version);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    expect(pkg.dependencies.ws).toMatch(/^\^8\.(2[3-9]|[3-9]\d)\./);
    const n = await startNode();
    try {
      expect(n.server.app.websocketServer.options).toMatchObject({
        maxPayload: 16384,
        maxFragments: 64,
        maxBufferedChunks: 4096,
        closeTimeout: 5000,
        perMessageDeflate: false,
      });
    } finally {
      await n.close();
    }
  });

  it('[H-FRAME-02] 10 frames of 1 MiB (10 sockets) → each closed 1009; over six more such rounds (60 MiB sent) heap + buffers grow < 2 MiB and RSS < 30 MiB', async () => {
    const big = 'x'.repeat(MiB);
    const round = () =>
      Promise.all(
        Array.from({ length: 10 }, async () => {
          const c = await TestClient.connect(wsUrl());
          c.ws.send(big);
          return (await within(c.closed, 5000, 'close after 1 MiB')).code;
        }),
      );
    expect(await round()).toEqual(Array(10).fill(1009)); // warm: the first 1009 path compiles code
    await sleep(200);
    const before = await proc.probe();
    for (let i = 0; i < 6; i++) expect(await round()).toEqual(Array(10).fill(1009));
    await sleep(200);
    const after = await proc.probe();
    // What the process holds after a forced GC is judged exactly. RSS is judged against what was sent: it moves by
    // whole allocator arenas either way (+8 and +16 MiB, and -3 to -6 MiB, were seen over one to three rounds;
    // swings of that size showed with the earlier code too), so a bound of a few MiB over one round failed at
    // random in a loaded CI run; frames kept by the server would add the 60 MiB sent.
    expect(after.heapUsed + after.external - before.heapUsed - before.external).toBeLessThan(2 * MiB);
    expect(after.rss - before.rss).toBeLessThan(30 * MiB);
    await stillServing();
  });

  it('[H-FRAME-03] a frame header claiming 2^62 (and 2^53, 2^32) bytes → closed 1009 at once, nothing allocated', async () => {
    const before = await proc.probe();
    for (const claimed of [2n ** 62n, 2n ** 53n, 2n ** 32n, 16385n]) {
      const raw = await rawReady();
      raw.write(encodeFrame({ opcode: 0x1, claimedLength: claimed }));
      const { code } = await within(raw.closed, 6000, `close after a ${claimed}-byte claim`);
      expect(code, String(claimed)).toBe(1009);
    }
    const after = await proc.probe();
    expect(after.rss - before.rss).toBeLessThan(2 * MiB);
    await stillServing();
  });

  it('[H-FRAME-04] fragment flood: 3 × 50 sockets, each one unfinished message in 100,000 one-byte continuations → all closed 1008; after the first round RSS grows < 32 MiB, heap + buffers < 4 MiB, fds back', async () => {
    const first = encodeFrame({ opcode: 0x1, fin: false, payload: '{' });
    const cont = encodeFrame({ opcode: 0x0, fin: false, payload: ' ' });
    const flood = Buffer.concat([first, ...Array.from({ length: 100_000 }, () => cont)]);
    const round = async () => {
      const sockets = await Promise.all(Array.from({ length: 50 }, () => rawReady()));
      for (const raw of sockets) raw.write(flood);
      const codes = await Promise.all(sockets.map((raw) => within(raw.closed, 10_000, 'close of a flooder')));
      await within(Promise.all(sockets.map((raw) => raw.ended)), 10_000, 'flooders gone');
      await sleep(200);
      // ws closes with 1008 "Too many message fragments" at the 65th fragment.
      return codes.map((c) => c.code);
    };
    // The first round grows the allocator's arenas (the server reads and drops what the flooders still send
    // until their close handshake ends); the rounds after it show whether anything is kept.
    expect(await round()).toEqual(Array(50).fill(1008));
    const before = await proc.probe();
    for (let i = 0; i < 2; i++) expect(await round()).toEqual(Array(50).fill(1008));
    const after = await proc.probe();
    // RSS is the allocator's view (it keeps freed arenas for a while): bounded well below the 70 MB thrown at it.
    // The heap and Buffers are the leak check.
    expect(after.rss - before.rss).toBeLessThan(32 * MiB);
    expect(after.heapUsed + after.external - before.heapUsed - before.external).toBeLessThan(4 * MiB);
    expect(after.fds - before.fds).toBeLessThanOrEqual(2);
    await stillServing();
  });

  it('[H-FRAME-05] permessage-deflate is never negotiated, and a compressed (RSV1) frame is a protocol error (1002)', async () => {
    const raw = await RawWs.open(wsUrl(), {
      headers: {
        'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits; server_no_context_takeover',
      },
    });
    expect(raw.status).toBe(101);
    expect(raw.responseHead.toLowerCase()).not.toContain('sec-websocket-extensions');
    await within(
      (async () => {
        while (!raw.events().some((e) => e.type === 'init')) await sleep(5);
      })(),
      5000,
      'init',
    );
    raw.send({ opcode: 0x1, rsv1: true, payload: Buffer.from([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]) });
    expect((await within(raw.closed, 6000, 'close after RSV1')).code).toBe(1002);
    // A library client asking for compression gets none either.
    const c = new WebSocket(wsUrl(), { perMessageDeflate: true });
    await new Promise((resolve, reject) => {
      c.once('open', resolve);
      c.once('error', reject);
    });
    expect(c.extensions).toBe('');
    c.terminate();
  });

  it('[H-FRAME-06] invalid UTF-8 (bad continuation, overlong NUL, encoded surrogate, split garbage) → 1007; valid UTF-8 split across fragments is fine', async () => {
    const bad = [
      Buffer.from([0xc3, 0x28]),
      Buffer.from([0xc0, 0x80]),
      Buffer.from([0xed, 0xa0, 0x80]),
      Buffer.from([0xf8, 0x88, 0x80, 0x80, 0x80]),
      Buffer.from('{"type":"ping"}\xff', 'latin1'),
    ];
    for (const payload of bad) {
      const raw = await rawReady();
      raw.send({ opcode: 0x1, payload });
      expect((await within(raw.closed, 6000, 'close after bad UTF-8')).code, payload.toString('hex')).toBe(
        1007,
      );
    }
    // A close frame whose reason is not UTF-8 is refused the same way.
    const raw = await rawReady();
    raw.send({ opcode: 0x8, payload: Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from([0xc3, 0x28])]) });
    expect((await within(raw.closed, 6000, 'close after bad close reason')).code).toBe(1007);
    // "é" split between two fragments of one message is valid.
    const ok = await rawReady();
    const text = Buffer.from('{"type":"message","message":"caf\u00e9 fragmented"}');
    const cut = text.indexOf(0xc3) + 1;
    ok.send({ opcode: 0x1, fin: false, payload: text.subarray(0, cut) });
    ok.send({ opcode: 0x0, fin: true, payload: text.subarray(cut) });
    await within(
      (async () => {
        while (
          !ok.events().some((e) => e.type === 'new_message' && e.message.message === 'caf\u00e9 fragmented')
        )
          await sleep(5);
      })(),
      5000,
      'the fragmented message',
    );
    ok.destroy();
  });

  it('[H-FRAME-07] upgrades with 2,000 headers (under and over the 16 KiB header limit) do not crash the process: 101 then 4401, or 431', async () => {
    const small = Array.from({ length: 2000 }, (_, i): [string, string] => [`x${i}`, 'y']);
    const large = Array.from({ length: 2000 }, (_, i): [string, string] => [`x-header-${i}`, 'y'.repeat(20)]);
    const results: number[] = [];
    for (const headers of [small, large]) {
      const started = Date.now();
      const raw = await RawWs.open(`${wsBase}/live-chat/ws/${sid}`, { headers });
      results.push(raw.status);
      if (raw.status === 101) expect((await within(raw.closed, 6000, 'close')).code).toBe(4401);
      else raw.destroy();
      expect(Date.now() - started).toBeLessThan(2000);
    }
    expect(results[0]).toBe(101);
    expect(results[1]).toBe(431);
    await stillServing();
  });

  it('[H-FRAME-14] what Node refuses before any route (headers over 16 KiB, a malformed request line, two Content-Lengths), and a chat socket handshake with a bad key or version, get the coded error body too', async () => {
    const u = new URL(wsBase);
    const answer = (bytes: string) =>
      new Promise<string>((resolve, reject) => {
        const s = createConnection({ host: u.hostname, port: Number(u.port) });
        let text = '';
        s.on('data', (d: Buffer) => {
          text += d.toString();
        });
        s.on('error', () => {});
        s.on('close', () => resolve(text));
        s.setTimeout(5000, () => reject(new Error(`no answer to ${JSON.stringify(bytes.slice(0, 40))}`)));
        s.write(bytes);
      });
    const cases: Array<[string, string, number, string]> = [
      [
        'headers over 16 KiB',
        `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
        431,
        'headers_too_large',
      ],
      ['a malformed request line', 'GARBAGE\r\n\r\n', 400, 'bad_request'],
      // A chat socket handshake `ws` would refuse with its own text/html 400.
      [
        'an upgrade without a valid Sec-WebSocket-Key',
        `GET /live-chat/ws/${sid}?token=${token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: nope\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        400,
        'bad_request',
      ],
      [
        'an upgrade with Sec-WebSocket-Version 8',
        `GET /live-chat/ws/${sid}?token=${token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n`,
        400,
        'bad_request',
      ],
      [
        'two Content-Lengths',
        'POST /live-chat/like HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
        400,
        'bad_request',
      ],
    ];
    for (const [label, bytes, status, code] of cases) {
      const text = await answer(bytes);
      expect(text, label).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      expect(text, label).toMatch(/content-type: application\/json/i);
      expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)).error.code, label).toBe(code);
    }
    await stillServing();
  });

  it('[H-FRAME-08] ReDoS-shaped Sec-WebSocket-Protocol, Sec-WebSocket-Extensions and Origin headers are handled in milliseconds (< 250 ms each)', async () => {
    const shapes: Array<[string, string]> = [
      ['Sec-WebSocket-Protocol', `a${',a'.repeat(3000)}`],
      ['Sec-WebSocket-Protocol', `${' '.repeat(8000)}a`],
      ['Sec-WebSocket-Protocol', `${'a'.repeat(8000)} ,`],
      ['Sec-WebSocket-Protocol', `${'a,'.repeat(4000)}\t`],
      ['Sec-WebSocket-Extensions', `${'permessage-deflate;'.repeat(600)}x`],
      ['Sec-WebSocket-Extensions', `a;${'b='.repeat(4000)}`],
      ['Origin', `https://${'a.'.repeat(3000)}example.com`],
      ['Origin', `https://app.example.com${'/'.repeat(8000)}`],
    ];
    for (const [name, value] of shapes) {
      const started = performance.now();
      const raw = await RawWs.open(wsUrl(), { headers: { [name]: value } });
      expect([101, 400]).toContain(raw.status);
      if (raw.status === 101)
        await within(
          raw.closed.catch(() => undefined),
          100,
          'wait',
        ).catch(() => {});
      raw.destroy();
      expect(performance.now() - started, `${name}: ${value.slice(0, 20)}…`).toBeLessThan(250);
    }
    await stillServing();
  });

  it('[H-FRAME-09] a ping flood (1,000 pings in one write) is cut off: close 1008 after at most 21 pongs, and 5 more a second of the node’s own read lag', async () => {
    const raw = await rawReady();
    const ping = encodeFrame({ opcode: 0x9, payload: 'p' });
    const lagBefore = await metric(url, 'drawchat_read_lag_seconds');
    const started = performance.now();
    raw.write(Buffer.concat(Array.from({ length: 1000 }, () => ping)));
    const { code } = await within(raw.closed, 6000, 'close after a ping flood');
    const elapsedS = (performance.now() - started) / 1000;
    const lagAfter = await metric(url, 'drawchat_read_lag_seconds');
    expect(code).toBe(1008);
    const pongs = raw.frames.filter((f) => f.opcode === 0xa).length;
    // The ping bucket (a burst of 20, 5 a second) also grants the refill of the time the node may have read late
    // (its read lag, API §5), so a node short of CPU does not take a client's pings for a flood. The lag it had
    // during the flood: at most what it had before plus the time since, or what it has after if the run of busy
    // windows lasted; a run that began meanwhile counts from the window before it (up to half a second back). Under
    // a loaded CI run the bucket gave 25 pongs, with a bound of 21 that ignored this.
    const lagS = Math.max(lagAfter, lagBefore + elapsedS, elapsedS + 0.5);
    expect(pongs).toBeLessThanOrEqual(21 + Math.ceil(5 * lagS));
    // Pings at a human pace are fine.
    const calm = await rawReady();
    for (let i = 0; i < 5; i++) {
      calm.send({ opcode: 0x9, payload: 'p' });
      await sleep(250);
    }
    expect(calm.frames.filter((f) => f.opcode === 0xa)).toHaveLength(5);
    expect(calm.frames.some((f) => f.opcode === 0x8)).toBe(false);
    calm.destroy();
  });

  it('[H-FRAME-10] control-frame and framing abuse (long ping, fragmented ping, 1-byte close, unmasked, reserved opcodes, stray continuation) → 1002, never a crash', async () => {
    const abuses: Array<[string, Buffer]> = [
      ['ping with 126 bytes', encodeFrame({ opcode: 0x9, payload: Buffer.alloc(126) })],
      ['fragmented ping', encodeFrame({ opcode: 0x9, fin: false, payload: 'p' })],
      ['close with 1 byte', encodeFrame({ opcode: 0x8, payload: Buffer.from([3]) })],
      ['close with code 999', encodeFrame({ opcode: 0x8, payload: Buffer.from([0x03, 0xe7]) })],
      ['unmasked text', encodeFrame({ opcode: 0x1, payload: '{"type":"ping"}', mask: false })],
      ['reserved opcode 0x3', encodeFrame({ opcode: 0x3, payload: 'x' })],
      ['reserved opcode 0xb', encodeFrame({ opcode: 0xb, payload: 'x' })],
      ['continuation without a start', encodeFrame({ opcode: 0x0, payload: 'x' })],
      [
        'text inside a fragmented message',
        Buffer.concat([
          encodeFrame({ opcode: 0x1, fin: false, payload: '{' }),
          encodeFrame({ opcode: 0x1, payload: '}' }),
        ]),
      ],
    ];
    for (const [label, bytes] of abuses) {
      const raw = await rawReady();
      raw.write(bytes);
      expect((await within(raw.closed, 6000, label)).code, label).toBe(1002);
    }
    await stillServing();
  });

  it('[H-FRAME-11] frames before `init`: more than 64 frames or 64 KiB of them close the socket 1008 instead of piling up', async () => {
    // An in-process node whose profile reads take 500 ms: `init` waits for the new user's profile, so every frame
    // sent with the upgrade arrives before it. The process server above answered in the same turn that read the
    // upgrade, and 64 KiB of frames need more than one read (a busy CI machine failed this when the rest came in
    // after `init`).
    const n = await startNode();
    const read = n.server.store.previewUsersFromClaims;
    n.server.store.previewUsersFromClaims = async function (this: typeof n.server.store, inputs) {
      await sleep(500);
      return read.call(this, inputs);
    };
    try {
      const sessionId = await n.sessionId(await n.token('early-host'));
      for (const [count, size] of [
        [100, 100],
        [5, 16_000],
      ] as const) {
        const frame = encodeFrame({
          opcode: 0x1,
          payload: JSON.stringify({ type: 'ping', pad: 'x'.repeat(size) }),
        });
        // The frames ride in the same TCP write as the upgrade request.
        const raw = await RawWs.open(
          `${n.wsUrl}/live-chat/ws/${sessionId}?token=${await n.token(`early-${count}`)}`,
          { trailing: Buffer.concat(Array.from({ length: count }, () => frame)) },
        );
        const { code, reason } = await within(
          raw.closed,
          6000,
          `close after ${count} early frames of ${size} bytes`,
        );
        expect(reason).toBe('too many frames before init');
        expect(code).toBe(1008);
      }
      // A well-behaved client of that node is still served (after its own slow profile read).
      const c = await TestClient.connect(
        `${n.wsUrl}/live-chat/ws/${sessionId}?token=${await n.token('early-witness')}`,
      );
      c.send({ type: 'ping' });
      await c.next('pong');
      c.close();
    } finally {
      n.server.store.previewUsersFromClaims = read;
      await n.close();
    }
    await stillServing();
  });

  it('[H-FRAME-13] an upgrade request to a route that is not a WebSocket (/healthz, /, /live-chat/status with a token) gets a coded 404 and its connection ends; it was upgraded (101) and closed without a code, outside the per-address handshake cap', async () => {
    for (const path of ['/healthz', '/', `/live-chat/status`]) {
      const raw = await RawWs.open(`${wsBase}${path}`, { headers: { Authorization: `Bearer ${token}` } });
      expect(raw.status, path).toBe(404);
      expect(raw.responseHead, path).toMatch(/content-type: application\/json/i);
      expect(raw.responseHead, path).not.toMatch(/^upgrade:/im);
      await within(raw.ended, 3000, `${path}: connection ended`);
    }
    // The chat socket itself is still upgraded.
    const chat = await rawReady();
    expect(chat.status).toBe(101);
    chat.socket.destroy();
  });

  it('[H-FRAME-12] 500 upgrade requests answered with plain HTTP (404 wrong path, 414 path too long) whose peers then idle (opened when this file started): 404s closed with the response (< 3 s), 414s by the 10 s deadline; shutdown is not held up by them', async () => {
    expect(new Set(idle.map((r) => r.status))).toEqual(new Set([404, 414]));
    const endedAt = await within(
      Promise.all(idleEnded),
      Math.max(1000, idleSince + 12_000 - Date.now()),
      'idle upgrade sockets dropped',
    );
    const slowest = (status: number) => Math.max(...endedAt.filter((_, i) => idle[i]!.status === status));
    // Closed with the response (well before the 10 s deadline; the margin is the busy test process).
    expect(slowest(404)).toBeLessThan(3000);
    expect(slowest(414)).toBeLessThan(11_000);
    // Shutdown with a fresh batch of them pending is prompt (they are destroyed, not waited for).
    const n = await startNode();
    await Promise.all([
      ...Array.from({ length: 25 }, () => RawWs.open(`${n.wsUrl}/nope`)),
      ...Array.from({ length: 25 }, () => RawWs.open(`${n.wsUrl}/live-chat/ws/${'9'.repeat(400)}`)),
    ]);
    const stopping = Date.now();
    await within(n.close(), 5000, 'close with idle upgrade sockets');
    expect(Date.now() - stopping).toBeLessThan(1000);
  });
});
