import type { WebSocket } from 'ws';
import type { HubSocket } from '../realtime/socket.js';

/** How long a closing socket may take to finish the close handshake before it is destroyed. */
const CLOSE_GRACE_MS = 5_000;

/** At most this many distinct frames are kept encoded at once (a tick rarely has more than a few). */
const MAX_ENCODED = 256;
/** Text → the complete WebSocket frame carrying it (header and UTF-8 payload), for this turn of the event loop. */
const encoded = new Map<string, Buffer>();
let clearScheduled = false;
/** The frames of the current corked tick, as one buffer of complete WebSocket frames (see `framed`). */
let lastTexts: readonly string[] | undefined;
let lastFramed: Buffer | undefined;

function scheduleClear(): void {
  if (clearScheduled) return;
  clearScheduled = true;
  setImmediate(() => {
    clearScheduled = false;
    encoded.clear();
    lastTexts = undefined;
    lastFramed = undefined;
  });
}

/** Size of a final, unmasked text frame's header (RFC 6455 §5.2) for a payload of `length` bytes. */
function headerBytes(length: number): number {
  return length < 126 ? 2 : length < 65536 ? 4 : 10;
}

/**
 * The complete WebSocket frame of a text, built once per turn of the event loop however many sockets it goes
 * to: the hub hands the same string to every socket of a room, and `ws` would encode it to UTF-8, make a header
 * and write the two in a corked `writev` for each of them. Server frames are not masked, so the bytes are the
 * same for every socket, and one `write` of them is all a socket needs.
 */
function frameOf(text: string): Buffer {
  let frame = encoded.get(text);
  if (frame === undefined) {
    const length = Buffer.byteLength(text);
    const h = headerBytes(length);
    frame = Buffer.allocUnsafe(h + length);
    frame[0] = 0x81;
    if (h === 2) frame[1] = length;
    else if (h === 4) {
      frame[1] = 126;
      frame.writeUInt16BE(length, 2);
    } else {
      frame[1] = 127;
      frame.writeUInt32BE(0, 2);
      frame.writeUInt32BE(length, 6);
    }
    frame.write(text, h, 'utf8');
    if (encoded.size >= MAX_ENCODED) encoded.clear();
    encoded.set(text, frame);
    scheduleClear();
  }
  return frame;
}

/** The UTF-8 payload of `frameOf(text)` (no copy), for `ws.send` where the socket cannot take raw frames. */
function payloadOf(text: string): Buffer {
  const frame = frameOf(text);
  const len = frame[1]!;
  return frame.subarray(len < 126 ? 2 : len === 126 ? 4 : 10);
}

/**
 * Several text frames as one buffer of complete WebSocket frames, built once per tick: the hub hands every
 * socket of a room the same strings in the same order, so after the first socket it is a lookup.
 */
function framed(texts: readonly string[]): Buffer {
  const last = lastTexts;
  if (last && lastFramed && last.length === texts.length && last.every((t, i) => t === texts[i])) {
    return lastFramed;
  }
  lastTexts = texts;
  lastFramed = Buffer.concat(texts.map(frameOf));
  scheduleClear();
  return lastFramed;
}

interface WsInternals {
  _socket?: { write(data: Buffer): boolean; cork(): void; uncork(): void };
  _sender?: { _state?: number };
  _extensions?: Record<string, unknown>;
}

/**
 * The TCP socket under `ws`, when writing complete frames to it directly is the same as `ws.send`: the socket is
 * open, no extension (compression) was negotiated, and ws's sender queues nothing (state 0, nothing being
 * compressed or read from a Blob), so our bytes go out in order after whatever `ws` wrote before.
 */
function rawSocket(ws: WebSocket): WsInternals['_socket'] | undefined {
  const w = ws as unknown as WsInternals;
  if (ws.readyState !== ws.OPEN || !w._socket || w._sender?._state !== 0) return undefined;
  for (const _ in w._extensions) return undefined;
  return w._socket;
}

/** Adapts a `ws` socket to the hub's minimal socket; `ws` types stop here. */
export class WsHubSocket implements HubSocket {
  /** Frames sent between `cork()` and `uncork()`: one tick's frames for a client without `batch=1`. */
  #corked: string[] | undefined;

  constructor(private readonly ws: WebSocket) {}

  send(data: string): void {
    if (this.#corked) {
      this.#corked.push(data);
      return;
    }
    const raw = rawSocket(this.ws);
    if (raw) raw.write(frameOf(data));
    else this.ws.send(payloadOf(data), { binary: false });
  }

  close(code: number, reason: string): void {
    if (this.ws.readyState === this.ws.CLOSED) return;
    this.ws.close(code, reason);
    // A stalled peer never answers the close frame; do not keep its buffers waiting for it.
    const timer = setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS);
    timer.unref();
    this.ws.once('close', () => clearTimeout(timer));
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  get isOpen(): boolean {
    return this.ws.readyState === this.ws.OPEN;
  }

  cork(): void {
    this.#corked ??= [];
  }

  /**
   * Writes the corked frames in one system call: as one prepared buffer of frames, shared by every socket of
   * the room, when the socket allows it (see `rawSocket`); else through `ws`, with the TCP socket corked.
   */
  uncork(): void {
    const texts = this.#corked;
    this.#corked = undefined;
    if (!texts || texts.length === 0) return;
    const raw = rawSocket(this.ws);
    if (raw) {
      raw.write(texts.length === 1 ? frameOf(texts[0]!) : framed(texts));
      return;
    }
    const socket = (this.ws as unknown as WsInternals)._socket;
    socket?.cork();
    try {
      for (const t of texts) this.ws.send(payloadOf(t), { binary: false });
    } finally {
      socket?.uncork();
    }
  }
}
