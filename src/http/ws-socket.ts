import type { WebSocket } from 'ws';
import type { HubSocket } from '../realtime/socket.js';

/** How long a closing socket may take to finish the close handshake before it is destroyed. */
const CLOSE_GRACE_MS = 5_000;

/** At most this many distinct frames are kept encoded at once (a tick rarely has more than a few). */
const MAX_ENCODED = 256;
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

/**
 * The UTF-8 bytes of a text frame, encoded once per turn of the event loop however many sockets it goes to.
 * The hub hands the same string to every socket of a room; `ws` would encode it again for each of them (and a
 * Buffer is written without a copy: server frames are not masked).
 */
function utf8(text: string): Buffer {
  let bytes = encoded.get(text);
  if (bytes === undefined) {
    bytes = Buffer.from(text);
    if (encoded.size >= MAX_ENCODED) encoded.clear();
    encoded.set(text, bytes);
    scheduleClear();
  }
  return bytes;
}

/** A final, unmasked text frame's header (RFC 6455 §5.2) for a payload of `length` bytes. */
function header(length: number): Buffer {
  if (length < 126) return Buffer.from([0x81, length]);
  if (length < 65536) return Buffer.from([0x81, 126, length >> 8, length & 0xff]);
  const h = Buffer.alloc(10);
  h[0] = 0x81;
  h[1] = 127;
  h.writeUIntBE(length, 4, 6);
  return h;
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
  const parts: Buffer[] = [];
  for (const t of texts) {
    const bytes = utf8(t);
    parts.push(header(bytes.length), bytes);
  }
  lastTexts = texts;
  lastFramed = Buffer.concat(parts);
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
  if (w._extensions && Object.keys(w._extensions).length > 0) return undefined;
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
    this.ws.send(utf8(data), { binary: false });
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
    if (texts.length === 1) {
      this.ws.send(utf8(texts[0]!), { binary: false });
      return;
    }
    const raw = rawSocket(this.ws);
    if (raw) {
      raw.write(framed(texts));
      return;
    }
    const socket = (this.ws as unknown as WsInternals)._socket;
    socket?.cork();
    try {
      for (const t of texts) this.ws.send(utf8(t), { binary: false });
    } finally {
      socket?.uncork();
    }
  }
}
