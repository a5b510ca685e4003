/**
 * One client process of the load generator (a child of the coordinator, over IPC). It holds a slice of the
 * simulated viewers:
 * - light clients: a bare WebSocket client (`raw-ws.ts`: the real upgrade and framing on a TCP socket) that counts
 *   frames, bytes and delivered messages by scanning the frame bytes (no JSON parse); a sample of them also reads
 *   the send timestamp of each message for the latency histogram; senders also see their own messages come back
 *   (the ack);
 * - full clients: draw-chat's own client library (ChatClient, which parses and schema-checks every event) with
 *   a tap on its socket that checks id order and records latency; for the baselines, `ws` + JSON.parse and
 *   socket.io-client.
 */
import { type Socket, io as socketIo } from 'socket.io-client';
import WebSocket from 'ws';
import { ChatClient } from '../../src/client/index.js';
import { ChatMessageParser } from '../../src/protocol/messages.js';
import { encode, type Histogram, newHistogram, recordMs } from './hist.js';
import {
  type ClientSpec,
  type FinalStats,
  type FromWorker,
  GIVE_UP_AFTER_TIMEOUTS,
  messageFrame,
  type TargetWire,
  type TickStats,
  type ToWorker,
} from './protocol.js';
import { RawWs } from './raw-ws.js';
import { ScanCache, type ScannedFrame } from './scan.js';
import { baselineIdentity } from './tokens.js';

const workerId = Number(process.env.BENCH_WORKER_ID ?? '0');
/** Send and receive times come from the wall clock every process shares (ms). */
const wall = () => Date.now();
const send = (m: FromWorker) => process.send?.(m);

/** How a frame holding `init` starts its event: draw-chat and the `ws` baselines share the event form. */
const INIT_EVENT = '"type":"init"';
const INIT_MARKS = { drawchat: INIT_EVENT, ws: INIT_EVENT, socketio: '42["init"' };

/** What the suite does with a client's socket, whether a light client's `RawWs` or a full client's `ws`. */
interface Conn {
  readonly readyState: number;
  send(text: string): void;
  terminate(): void;
}

interface Client {
  spec: ClientSpec;
  base: string;
  ws?: Conn;
  chat?: ChatClient;
  sio?: Socket;
  ready: boolean;
  everReady: boolean;
  /** performance.now() of the current (re)connection attempt. */
  startedAt: number;
  lastId: number;
  stopped: boolean;
  resuming: boolean;
  /** Sender: prefix of its own tags, `<worker>.<index>.`. */
  tag: string;
  seq: number;
  received: number;
  likeSecond: number;
  likeCount: number;
  likeMax: number;
  likeTotal: number;
}

let wire: TargetWire | undefined;
let initMark = INIT_MARKS.drawchat;
const clients: Client[] = [];
const senders: Client[] = [];
const hearters: Client[] = [];
let rates = { messages: 0, hearts: 0 };
let msgBudget = 0;
let heartBudget = 0;
let nextSender = 0;
let nextHearter = 0;
let lastPump = performance.now();
/** How often the offered messages and hearts are sent (ms). */
const PUMP_MS = 10;
let likeWindowStart = 0;
let likeWindowEnd = 0;

const tick = {
  deliveries: 0,
  frames: 0,
  bytes: 0,
  sent: 0,
  acked: 0,
  heartsSent: 0,
  likeUpdates: 0,
  resumed: 0,
  errors: {} as Record<string, number>,
  closes: {} as Record<string, number>,
};
const latency = newHistogram();
const ack = newHistogram();
const connectH = newHistogram();
const totals = {
  sent: 0,
  acked: 0,
  heartsSent: 0,
  heartsRefused: 0,
  invalidEvents: 0,
  orderViolations: 0,
};

function bump(map: Record<string, number>, key: string, n = 1): void {
  map[key] = (map[key] ?? 0) + n;
}

// ------------------------------------------------------------------ URLs

function wsBase(http: string): string {
  return http.replace(/^http/, 'ws');
}

function urlFor(c: Client, since?: number): string {
  const w = wire!;
  const token = c.spec.token ?? '';
  if (w.kind === 'drawchat') {
    let q = `token=${token}`;
    if (w.batch) q += '&batch=1';
    if (since !== undefined && since > 0) q += `&since=${since}`;
    return `${wsBase(c.base)}/live-chat/ws/${w.sessionId}?${q}`;
  }
  const who = new URLSearchParams(baselineIdentity(c.spec.token, `bench-${c.spec.index}`));
  if (w.kind === 'ws') return `${wsBase(c.base)}/?${who}&token=${token}`;
  return `${wsBase(c.base)}/socket.io/?EIO=4&transport=websocket&${who}`;
}

// ------------------------------------------------------------------ connecting

let onSettled: ((c: Client, ok: boolean, why?: string) => void) | undefined;

function settle(c: Client, ok: boolean, why?: string): void {
  const cb = onSettled;
  if (cb) cb(c, ok, why);
}

function becameReady(c: Client): void {
  if (c.ready) return;
  c.ready = true;
  recordMs(connectH, performance.now() - c.startedAt);
  if (c.everReady) tick.resumed++;
  c.everReady = true;
  c.resuming = false;
  settle(c, true);
}

function openLight(c: Client, since?: number): void {
  c.startedAt = performance.now();
  c.ready = false;
  const ws: RawWs = new RawWs(urlFor(c, since), {
    refused: (status) => {
      bump(tick.errors, `http_${status}`);
      settle(c, false, `http_${status}`);
      retryLater(c, 'http');
    },
    error: (code) => {
      bump(tick.errors, code);
      settle(c, false, code);
    },
    message: (data) => onLightFrame(c, data),
    close: (code) => {
      if (c.ws !== ws) return;
      const wasReady = c.ready;
      c.ready = false;
      if (c.stopped) return;
      bump(tick.closes, String(code));
      if (!wasReady) settle(c, false, `close_${code}`);
      retryLater(c, 'close');
    },
  });
  c.ws = ws;
}

/** A dropped light client comes back (resuming with `since` on draw-chat), as a real client would. */
function retryLater(c: Client, _why: string): void {
  if (c.stopped || c.resuming) return;
  c.resuming = true;
  setTimeout(
    () => {
      c.resuming = false;
      if (!c.stopped && !c.ready) openLight(c, c.lastId);
    },
    250 + Math.random() * 750,
  );
}

const scans = new ScanCache();

/** A light client's frame: counted by `scanFrame` (bench/lib/scan.ts, through `ScanCache`), without a parse. */
function onLightFrame(c: Client, buf: Buffer): void {
  // A poll phase of thousands of frames holds timers back (src/realtime/loop-guard.ts): the sends due meanwhile
  // go from here, so that the offered rates are sent evenly, not in bursts when the loop comes round.
  if (performance.now() - lastPump >= 2 * PUMP_MS) pumpSends();
  tick.frames++;
  tick.bytes += buf.length;
  const kind = wire!.kind;
  if (kind === 'socketio') {
    const first = buf[0];
    if (first === 0x30 /* '0' open */) {
      c.ws!.send('40');
      return;
    }
    if (first === 0x32 /* '2' ping */ && buf.length === 1) {
      c.ws!.send('3');
      return;
    }
  }
  const frame = scans.scan(buf, kind);
  if (!c.ready && frame.text.includes(initMark)) {
    if (kind === 'drawchat') readInit(c, buf);
    becameReady(c);
    if (frame.text.length < 64) return;
  }
  const counts = frame.counts;
  if (counts.messages > 0) {
    tick.deliveries += counts.messages;
    if (counts.lastId > c.lastId) c.lastId = counts.lastId;
    if (c.spec.sample || c.spec.sender) readLatencies(c, frame);
  }
  if (counts.likeUpdates > 0) countLikeUpdates(c, counts.likeUpdates);
  if (counts.errors) countErrors(c, buf);
}

function readInit(c: Client, buf: Buffer): void {
  try {
    const parsed = JSON.parse(buf.toString());
    for (const e of Array.isArray(parsed) ? parsed : [parsed]) {
      if (e?.type !== 'init') continue;
      const last = e.messages?.at(-1)?.id;
      if (typeof last === 'number' && last > c.lastId) c.lastId = last;
    }
  } catch {
    bump(tick.errors, 'bad_init');
  }
}

/** `lt:<ms>:<tag>` → latency; a sender's own tag is also its ack. */
function readLatencies(c: Client, frame: ScannedFrame): void {
  const now = wall();
  for (const [sentAt, tagAt] of scans.marks(frame)) {
    const ms = now - sentAt;
    if (c.spec.sample) recordMs(latency, ms);
    if (c.spec.sender && frame.text.startsWith(c.tag, tagAt)) {
      recordMs(ack, ms);
      tick.acked++;
      totals.acked++;
    }
  }
}

function countLikeUpdates(c: Client, n: number): void {
  tick.likeUpdates += n;
  // From the first heart on (the hub sends counts only when they change), until the figures are read.
  if (likeWindowStart === 0 || likeWindowEnd !== 0) return;
  const second = Math.floor(Date.now() / 1000);
  if (second !== c.likeSecond) {
    if (c.likeCount > c.likeMax) c.likeMax = c.likeCount;
    c.likeSecond = second;
    c.likeCount = 0;
  }
  c.likeCount += n;
  c.likeTotal += n;
}

function countErrors(c: Client, buf: Buffer): void {
  const text = buf.toString();
  for (const m of text.matchAll(/"type":"error","code":"([a-z_]+)"/g)) {
    bump(tick.errors, m[1]!);
    if (m[1] === 'rate_limited' && !c.spec.sender) totals.heartsRefused++;
  }
}

// ------------------------------------------------------------------ full clients

function onFullFrame(c: Client, text: string): void {
  tick.frames++;
  tick.bytes += text.length;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    totals.invalidEvents++;
    return;
  }
  const now = wall();
  for (const e of (Array.isArray(parsed) ? parsed : [parsed]) as Array<Record<string, any>>) {
    if (e?.type === 'init') {
      const last = e.messages?.at(-1)?.id;
      if (typeof last === 'number' && last > c.lastId) c.lastId = last;
      if (wire!.kind === 'ws') becameReady(c);
      continue;
    }
    if (e?.type === 'error') bump(tick.errors, String(e.code));
    if (e?.type !== 'new_message') continue;
    tick.deliveries++;
    // draw-chat: the client library has checked the schema already (its count is read at the end).
    checkMessage(c, e.message, now, wire!.kind !== 'drawchat');
  }
}

/**
 * What the bench checks on the socket of a draw-chat full client, beside the client library (which parses every
 * event and checks it against the protocol schema; its count of invalid events is read at the end): that message
 * ids only grow, and the latency of load-test messages, read with the light clients' scan. The library's parse and
 * schema check are the work the baselines' full clients do in `onFullFrame`; a second `JSON.parse` of each frame
 * here made draw-chat's full clients cost the generator more than theirs. A frame with `init` (one per
 * connection) is parsed.
 */
function onTappedFrame(c: Client, buf: Buffer): void {
  // The same bytes the light clients of this process got: read once (`ScanCache`).
  const frame = scans.scan(buf, 'drawchat');
  if (frame.text.includes(INIT_EVENT)) {
    onFullFrame(c, buf.toString());
    return;
  }
  tick.frames++;
  tick.bytes += buf.length;
  const now = wall();
  for (const id of scans.messageIds(frame)) {
    tick.deliveries++;
    noteId(c, id);
  }
  for (const [sentAt] of scans.marks(frame)) noteTagged(c, now - sentAt);
  if (frame.counts.errors) countErrors(c, buf);
}

/** A full client's order check: message ids only grow (no repeat, no reordering). */
function noteId(c: Client, id: number): void {
  if (id <= c.lastId) totals.orderViolations++;
  else c.lastId = id;
}

/** A full client received one of this run's messages, `ms` after it was sent. */
function noteTagged(c: Client, ms: number): void {
  c.received++;
  recordMs(latency, ms);
}

/**
 * A full client's check of one delivered message: its id only grows (no repeat, no reordering), and, on the
 * baselines, its shape against draw-chat's protocol schema. draw-chat's full clients run the product's client
 * library, which checks every event against that schema itself, so the generator does the same work per message
 * for every target: when only draw-chat's were checked, its 2 % of full clients cost the generator about 30 points
 * of CPU more than the baselines' did (5,000 viewers at 300 msg/s), taken from the server it measured.
 */
function checkMessage(c: Client, m: Record<string, any> | undefined, now: number, schema: boolean): void {
  const valid = schema
    ? ChatMessageParser.safeParse(m).success
    : typeof m?.id === 'number' && typeof m.message === 'string';
  if (!valid || !m) {
    totals.invalidEvents++;
    return;
  }
  noteId(c, m.id);
  if (m.message.startsWith('lt:')) {
    const sentAt = Number(m.message.slice(3, m.message.indexOf(':', 3)));
    if (Number.isFinite(sentAt)) noteTagged(c, now - sentAt);
    else c.received++;
  }
}

function openFull(c: Client): void {
  c.startedAt = performance.now();
  const w = wire!;
  if (w.kind === 'drawchat') {
    // The product's client library, on `ws`, with a tap on each socket it opens.
    const Tapped = class extends WebSocket {
      constructor(url: string) {
        super(url, { perMessageDeflate: false });
        c.ws = this;
        c.startedAt = performance.now();
        this.on('message', (data: Buffer, isBinary: boolean) => {
          if (!isBinary) onTappedFrame(c, data);
        });
        this.on('close', (code) => {
          if (!c.stopped) bump(tick.closes, String(code));
        });
      }
    };
    const chat = new ChatClient({
      baseUrl: c.base,
      sessionId: w.sessionId,
      getToken: () => c.spec.token ?? '',
      WebSocket: Tapped,
      batch: w.batch,
    });
    c.chat = chat;
    let state = chat.getSnapshot().state;
    chat.subscribe(() => {
      const snap = chat.getSnapshot();
      if (snap.state !== state) {
        state = snap.state;
        if (state === 'open') becameReady(c);
        else c.ready = false;
      }
    });
    chat.start();
    return;
  }
  if (w.kind === 'ws') {
    const ws = new WebSocket(urlFor(c), { perMessageDeflate: false });
    c.ws = ws;
    ws.on('error', (err: NodeJS.ErrnoException) => settle(c, false, err.code ?? 'socket_error'));
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) onFullFrame(c, data.toString());
    });
    ws.on('close', (code) => {
      c.ready = false;
      if (!c.stopped) bump(tick.closes, String(code));
    });
    return;
  }
  const sio = socketIo(c.base, {
    transports: ['websocket'],
    forceNew: true,
    query: baselineIdentity(c.spec.token, `bench-${c.spec.index}`),
    reconnectionDelay: 250,
    reconnectionDelayMax: 1000,
  });
  c.sio = sio;
  sio.on('init', () => becameReady(c));
  sio.on('disconnect', () => {
    c.ready = false;
    c.startedAt = performance.now();
  });
  sio.on('connect_error', (err) => settle(c, false, err.message));
  sio.on('new_message', (m: Record<string, any>) => {
    tick.deliveries++;
    tick.frames++;
    checkMessage(c, m, wall(), true);
  });
}

// ------------------------------------------------------------------ commands

async function connectAll(clientSpecs: ClientSpec[], concurrency: number, timeoutMs: number): Promise<void> {
  const started = performance.now();
  const failures: Record<string, number> = {};
  let ok = 0;
  let failed = 0;
  let next = 0;
  let inFlight = 0;
  const pending = new Set<Client>();
  const fresh: Client[] = clientSpecs.map((spec) => ({
    spec,
    base: wire!.urls[spec.index % wire!.urls.length]!,
    ready: false,
    everReady: false,
    startedAt: 0,
    lastId: 0,
    stopped: false,
    resuming: false,
    tag: `${workerId}.${spec.index}.`,
    seq: 0,
    received: 0,
    likeSecond: 0,
    likeCount: 0,
    likeMax: 0,
    likeTotal: 0,
  }));
  for (const c of fresh) {
    clients.push(c);
    if (c.spec.sender && !c.spec.full) senders.push(c);
    else if (!c.spec.full) hearters.push(c);
  }
  await new Promise<void>((resolve) => {
    let timeouts = 0;
    const guard = setInterval(
      () => {
        const now = performance.now();
        for (const c of pending) {
          if (now - c.startedAt <= timeoutMs) continue;
          timeouts++;
          if (timeouts === GIVE_UP_AFTER_TIMEOUTS && next < fresh.length) {
            failed += fresh.length - next;
            bump(failures, 'gave_up', fresh.length - next);
            for (const rest of fresh.slice(next)) rest.stopped = true;
            next = fresh.length;
          }
          settle(c, false, 'timeout');
        }
      },
      Math.min(1000, timeoutMs / 4),
    );
    const pump = () => {
      while (inFlight < concurrency && next < fresh.length) {
        const c = fresh[next++]!;
        inFlight++;
        pending.add(c);
        if (c.spec.full) openFull(c);
        else openLight(c);
      }
      if (inFlight === 0 && next >= fresh.length) {
        clearInterval(guard);
        resolve();
      }
    };
    onSettled = (c, isOk, why) => {
      if (!pending.delete(c)) return;
      inFlight--;
      if (isOk) ok++;
      else {
        failed++;
        bump(failures, why ?? 'unknown');
      }
      pump();
    };
    pump();
  });
  onSettled = undefined;
  send({ type: 'connected', ok, failed, elapsedMs: performance.now() - started, failures });
}

function pumpSends(): void {
  const now = performance.now();
  const dt = Math.min((now - lastPump) / 1000, 1);
  lastPump = now;
  if (rates.messages > 0 && senders.length > 0) {
    msgBudget += rates.messages * dt;
    let tries = 0;
    while (msgBudget >= 1 && tries < senders.length) {
      const s = senders[nextSender++ % senders.length]!;
      if (!s.ready) {
        tries++;
        continue;
      }
      tries = 0;
      msgBudget--;
      sendMessage(s);
    }
    if (msgBudget > rates.messages) msgBudget = rates.messages;
  }
  if (rates.hearts > 0 && hearters.length > 0) {
    heartBudget += rates.hearts * dt;
    let tries = 0;
    while (heartBudget >= 1 && tries < hearters.length) {
      const h = hearters[nextHearter++ % hearters.length]!;
      if (!h.ready || !h.ws) {
        tries++;
        continue;
      }
      tries = 0;
      heartBudget--;
      h.ws.send('{"type":"like"}');
      tick.heartsSent++;
      totals.heartsSent++;
    }
    if (heartBudget > rates.hearts) heartBudget = rates.hearts;
  }
}

function sendMessage(s: Client): void {
  const tag = `${s.tag}${s.seq++}`;
  const text = `lt:${wall()}:${tag}`;
  s.ws!.send(messageFrame(wire!.kind, text, tag));
  tick.sent++;
  totals.sent++;
}

function drop(jitterMs: number): void {
  for (const c of clients) {
    if (c.chat) {
      // The library notices the dead socket and resumes with `since` by itself.
      c.ready = false;
      c.startedAt = performance.now();
      c.ws?.terminate();
      continue;
    }
    if (c.sio) {
      c.sio.io.engine?.close();
      continue;
    }
    const ws = c.ws;
    c.ready = false;
    c.resuming = true;
    c.ws = undefined;
    ws?.terminate();
    setTimeout(() => {
      c.resuming = false;
      if (!c.stopped) openLight(c, c.lastId);
    }, Math.random() * jitterMs);
  }
  send({ type: 'dropped' });
}

function tickStats(): TickStats {
  const stats: TickStats = {
    ...tick,
    latency: encode(latency),
    ack: encode(ack),
    connect: encode(connectH),
    connected: clients.filter((c) => c.ws?.readyState === WebSocket.OPEN || c.sio?.connected).length,
    ready: clients.filter((c) => c.ready).length,
  };
  for (const h of [latency, ack, connectH] as Histogram[]) h.reset();
  tick.deliveries = tick.frames = tick.bytes = tick.sent = tick.acked = 0;
  tick.heartsSent = tick.likeUpdates = tick.resumed = 0;
  tick.errors = {};
  tick.closes = {};
  return stats;
}

function finalStats(): FinalStats {
  const full = clients.filter((c) => c.spec.full);
  const end = likeWindowEnd || Date.now();
  const windowS = likeWindowStart ? Math.max((end - likeWindowStart) / 1000, 0.001) : 0;
  let maxPerSecond = 0;
  let maxAvg = 0;
  let receivedMax = 0;
  for (const c of clients) {
    maxPerSecond = Math.max(maxPerSecond, c.likeMax, c.likeCount);
    receivedMax = Math.max(receivedMax, c.likeTotal);
    // Updates a viewer got per second, from the first heart until the figures are read (every heart counted).
    if (windowS > 0) maxAvg = Math.max(maxAvg, c.likeTotal / windowS);
  }
  const invalid = full.reduce((n, c) => n + (c.chat?.getSnapshot().invalidEvents ?? 0), 0);
  return {
    fullClients: full.length,
    invalidEvents: totals.invalidEvents + invalid,
    orderViolations: totals.orderViolations,
    fullReceivedMin: full.length ? Math.min(...full.map((c) => c.received)) : 0,
    fullReceivedMax: full.length ? Math.max(...full.map((c) => c.received)) : 0,
    likeUpdatesMaxPerSecond: maxPerSecond,
    likeUpdatesMaxAvgPerSecond: maxAvg,
    likeUpdatesReceivedMax: receivedMax,
    likeUpdateWindowS: windowS,
    heartsSent: totals.heartsSent,
    heartsRefused: totals.heartsRefused,
    sent: totals.sent,
    acked: totals.acked,
  };
}

function closeAll(): void {
  for (const c of clients) {
    c.stopped = true;
    c.chat?.stop();
    c.sio?.disconnect();
    c.ws?.terminate();
  }
}

function reset(): void {
  closeAll();
  clients.length = 0;
  senders.length = 0;
  hearters.length = 0;
  rates = { messages: 0, hearts: 0 };
  msgBudget = heartBudget = 0;
  likeWindowStart = likeWindowEnd = 0;
  for (const k of Object.keys(totals) as Array<keyof typeof totals>) totals[k] = 0;
  tickStats();
}

const pumpTimer = setInterval(pumpSends, PUMP_MS);

process.on('message', (m: ToWorker) => {
  switch (m.cmd) {
    case 'connect':
      wire = m.wire;
      initMark = INIT_MARKS[m.wire.kind];
      void connectAll(m.clients, m.concurrency, m.timeoutMs);
      return;
    case 'rates':
      if (m.hearts > 0 && rates.hearts === 0) {
        likeWindowStart = Date.now();
        likeWindowEnd = 0;
        for (const c of clients) {
          c.likeSecond = Math.floor(likeWindowStart / 1000);
          c.likeCount = c.likeMax = c.likeTotal = 0;
        }
      }
      rates = { messages: m.messages, hearts: m.hearts };
      msgBudget = Math.min(msgBudget, 1);
      heartBudget = Math.min(heartBudget, 1);
      return;
    case 'tick':
      send({ type: 'tick', stats: tickStats() });
      return;
    case 'drop':
      drop(m.jitterMs);
      return;
    case 'final':
      send({ type: 'final', stats: finalStats() });
      if (likeWindowStart !== 0 && likeWindowEnd === 0) likeWindowEnd = Date.now();
      return;
    case 'reset':
      reset();
      send({ type: 'reset' });
      return;
    case 'close':
      clearInterval(pumpTimer);
      closeAll();
      setTimeout(() => process.exit(0), 100);
      return;
  }
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
