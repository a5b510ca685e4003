import type { WebSocket } from 'ws';
import type { HubSocket } from '../../src/realtime/socket.js';

/** How long a closing socket may take to finish the close handshake before it is destroyed. */
const CLOSE_GRACE_MS = 5_000;

/** Adapts a `ws` socket to the hub's minimal socket; `ws` types stop here. */
export class WsHubSocket implements HubSocket {
  constructor(private readonly ws: WebSocket) {}

  send(data: string): void {
    this.ws.send(data);
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
