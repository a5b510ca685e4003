/**
 * The little the hub needs from a WebSocket. The `ws` adapter in src/http/ws-socket.ts implements it; unit
 * tests use an in-memory fake. Nothing under src/realtime imports `ws`.
 */
export interface HubSocket {
  /** Queue one text frame. */
  send(data: string): void;
  close(code: number, reason: string): void;
  /** Bytes queued but not yet handed to the kernel. */
  readonly bufferedAmount: number;
  readonly isOpen: boolean;
  /** Group the frames of one tick into one write (TCP cork); no-ops where unsupported. */
  cork(): void;
  uncork(): void;
}
