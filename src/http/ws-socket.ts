import type { WebSocket } from 'ws';
import type { HubSocket } from '../realtime/socket.js';

/** How long a closing socket may take to finish the close handshake before it is destroyed. */
const CLOSE_GRACE_MS = 5_000;

/** At most this many distinct frames are kept encoded at once (a tick rarely has more than a few). */
const MAX_ENCODED = 256;
const encoded = new Map<string, Buffer>();
let clearScheduled = false;

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
    if (!clearScheduled) {
      clearScheduled = true;
      setImmediate(() => {
        clearScheduled = false;
        encoded.clear();
      });
    }
  }
  return bytes;
}

/** Adapts a `ws` socket to the hub's minimal socket; `ws` types stop here. */
export class WsHubSocket implements HubSocket {
  constructor(private readonly ws: WebSocket) {}

  send(data: string): void {
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
    (this.ws as unknown as { _socket?: { cork(): void } })._socket?.cork();
  }

  uncork(): void {
    (this.ws as unknown as { _socket?: { uncork(): void } })._socket?.uncork();
  }
}
