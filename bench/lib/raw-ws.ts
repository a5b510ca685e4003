/**
 * The load generator's light WebSocket client: the real HTTP upgrade and RFC 6455 framing over a bare TCP socket,
 * and no more. Light clients only count frames and scan their bytes; on `ws`, each paid for an HTTP client request,
 * a random key and its SHA-1 check, and a stream per socket that every frame went through, which made the generator,
 * on the same cores as the server it measures, spend about as much per connection and per frame as the server
 * did. Every target (draw-chat and both baselines) gets the same client.
 *
 * What it does not do, because no server of the suite needs it: extensions, redirects, checking
 * `Sec-WebSocket-Accept`. Frames it sends are masked with a zero key (allowed: the key is the client's choice).
 * `wss:` (a running server behind TLS, `npm run loadtest -- --url https://…`) goes through `tls` and its stream.
 */
import { connect, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';

/** A fixed key: the server's accept value is not checked, so a random one per connection buys nothing. */
const KEY = 'ZHJhdy1jaGF0LWxvYWRnbg=='; // base64 of 16 bytes, as the RFC asks
const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
/** The most header bytes the upgrade response may take before the connection is given up. */
const MAX_HEAD_BYTES = 16 * 1024;
/**
 * Every socket of the process reads into this one buffer (`onread`): its bytes are handled before the next read,
 * and what is kept between reads is copied. No Buffer per chunk and no stream `push`/`'data'` per read: the
 * generator reads every frame the servers write, and this was a good part of its cost per frame.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

export interface RawWsHandlers {
  /** A whole text message (its payload only; a view into the read buffer, valid during the call only). */
  message(data: Buffer): void;
  /** The upgrade was answered with another status; the connection is closed after this. */
  refused(status: number): void;
  error(code: string): void;
  /** The connection is gone: the close frame's code, 1005 for one without a code, 1006 without a close frame. */
  close(code: number): void;
}

/** The most a server frame of the suite may take; a longer one is refused (no server sends one). */
const MAX_FRAME_BYTES = 64 * 1024 * 1024;

/** The header size of an unmasked frame whose second byte is `b1` (RFC 6455 §5.2: 2, 4 or 10 bytes). */
function headerSize(b1: number): number {
  const len7 = b1 & 0x7f;
  return len7 < 126 ? 2 : len7 === 126 ? 4 : 10;
}

/**
 * The size of the frame that starts at `at` (header and payload): 0 while its header is not all there, -1 for a
 * frame no server may send (masked, or longer than `MAX_FRAME_BYTES`).
 */
function frameSize(buf: Buffer, at: number): number {
  if (at + 2 > buf.length) return 0;
  const b1 = buf[at + 1]!;
  if (b1 & 0x80) return -1;
  const head = headerSize(b1);
  if (at + head > buf.length) return 0;
  if (head === 2) return 2 + (b1 & 0x7f);
  if (head === 4) return 4 + buf.readUInt16BE(at + 2);
  const len = Number(buf.readBigUInt64BE(at + 2));
  return len > MAX_FRAME_BYTES ? -1 : 10 + len;
}

/**
 * Parses server frames out of TCP chunks. Pure: fed bytes, it calls back with whole frames (tested on its own).
 * Frames are read in place; a frame that a read cuts is kept in a buffer of its own size and completed from the
 * next reads. A generator that falls behind reads 64 KB at a time and most of its reads end inside a frame:
 * gluing what was left to the next read copied that whole read each time (six times the bytes of the split
 * frames), and the copies grew as the generator fell further behind.
 */
export class FrameReader {
  /** The first bytes of a frame, fewer than its header (at most 13). */
  #head: Buffer | undefined;
  /** A frame whose header has been read, `filled` bytes of it so far. */
  #partial: { frame: Buffer; filled: number } | undefined;
  #fragments: Buffer[] | undefined;
  #fragmentOp = 0;
  /** Bytes copied so far to keep them past the chunk they came in (tested: a split frame is copied once). */
  copiedBytes = 0;

  constructor(
    private readonly onFrame: (opcode: number, payload: Buffer) => void,
    /** Stops the parse between two frames (the connection was closed by a handler). */
    private readonly stopped: () => boolean = () => false,
  ) {}

  /** Returns false on a frame no server may send (masked, a control frame over 125 bytes, a stray continuation). */
  push(chunk: Buffer): boolean {
    let at = 0;
    if (this.#head) {
      // Enough of this chunk to finish the header (at most 14 bytes copied), then the frame goes on as a partial.
      const head = Buffer.concat([this.#head, chunk.subarray(0, 14)]);
      const size = frameSize(head, 0);
      if (size < 0) return false;
      if (size === 0) {
        this.copiedBytes += chunk.length;
        this.#head = head;
        return true;
      }
      const frame = Buffer.allocUnsafe(size);
      this.#partial = { frame, filled: this.#head.copy(frame) };
      this.#head = undefined;
    }
    const partial = this.#partial;
    if (partial) {
      at = chunk.copy(partial.frame, partial.filled);
      partial.filled += at;
      this.copiedBytes += at;
      if (partial.filled < partial.frame.length) return true;
      this.#partial = undefined;
      if (this.#frames(partial.frame, 0) < 0) return false;
    }
    const end = this.#frames(chunk, at);
    if (end < 0) return false;
    if (end === chunk.length || this.stopped()) return true;
    // What is left is the start of a frame: kept, copied, in a buffer of the frame's size when it is known.
    const size = frameSize(chunk, end);
    if (size < 0) return false;
    this.copiedBytes += chunk.length - end;
    if (size === 0) {
      this.#head = Buffer.from(chunk.subarray(end));
      return true;
    }
    const frame = Buffer.allocUnsafe(size);
    this.#partial = { frame, filled: chunk.copy(frame, 0, end) };
    return true;
  }

  /** Handles the whole frames of `buf` from `at` on; returns where the first incomplete one starts, or -1. */
  #frames(buf: Buffer, at: number): number {
    while (at < buf.length && !this.stopped()) {
      const size = frameSize(buf, at);
      if (size < 0) return -1;
      if (size === 0 || at + size > buf.length) break;
      const b0 = buf[at]!;
      const payload = buf.subarray(at + headerSize(buf[at + 1]!), at + size);
      at += size;
      const opcode = b0 & 0x0f;
      const fin = (b0 & 0x80) !== 0;
      if (opcode >= 0x8) {
        if (payload.length > 125) return -1;
        this.onFrame(opcode, payload);
      } else if (opcode === OP_CONTINUATION) {
        if (!this.#fragments) return -1;
        if (!fin) {
          // Kept past this chunk: a copy (the chunk may be a reused read buffer).
          this.copiedBytes += payload.length;
          this.#fragments.push(Buffer.from(payload));
          continue;
        }
        this.#fragments.push(payload);
        const whole = Buffer.concat(this.#fragments);
        this.#fragments = undefined;
        this.onFrame(this.#fragmentOp, whole);
      } else if (fin) {
        this.onFrame(opcode, payload);
      } else {
        // The first piece of a fragmented message: copied, the chunk it sits in is not kept.
        this.copiedBytes += payload.length;
        this.#fragments = [Buffer.from(payload)];
        this.#fragmentOp = opcode;
      }
    }
    return at;
  }
}

/** A client frame: FIN, the opcode, a zero mask key, the payload as is (XOR with zeros). */
export function clientFrame(opcode: number, payload: Buffer): Buffer {
  const len = payload.length;
  const head = len < 126 ? 6 : len < 65_536 ? 8 : 14;
  const frame = Buffer.allocUnsafe(head + len);
  frame[0] = 0x80 | opcode;
  if (len < 126) {
    frame[1] = 0x80 | len;
  } else if (len < 65_536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(len, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(len), 2);
  }
  frame.fill(0, head - 4, head);
  payload.copy(frame, head);
  return frame;
}

export class RawWs {
  static readonly OPEN = 1;
  /** 0 connecting, 1 open, 2 closing, 3 closed (as `ws` counts). */
  readyState = 0;
  readonly #socket: Socket;
  readonly #reader: FrameReader;
  #head: Buffer | undefined;
  #closeCode = 1006;
  #done = false;

  constructor(
    url: string,
    private readonly on: RawWsHandlers,
  ) {
    const u = new URL(url);
    this.#reader = new FrameReader(
      (opcode, payload) => this.#frame(opcode, payload),
      () => this.readyState !== 1,
    );
    const secure = u.protocol === 'wss:' || u.protocol === 'https:';
    const port = Number(u.port || (secure ? 443 : 80));
    if (secure) {
      this.#socket = connectTls({ host: u.hostname, port, servername: u.hostname });
      this.#socket.setNoDelay(true);
      this.#socket.on('data', (chunk: Buffer) => this.#data(chunk));
    } else {
      this.#socket = connect({
        host: u.hostname,
        port,
        noDelay: true,
        onread: {
          buffer: READ_BUFFER,
          callback: (n) => {
            this.#data(READ_BUFFER.subarray(0, n));
            return true;
          },
        },
      });
    }
    this.#socket.write(
      `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    this.#socket.on('error', (err: NodeJS.ErrnoException) => this.on.error(err.code ?? 'socket_error'));
    this.#socket.on('close', () => {
      this.readyState = 3;
      if (this.#done) return;
      this.#done = true;
      this.on.close(this.#closeCode);
    });
  }

  send(text: string): void {
    if (this.readyState !== 1) return;
    this.#socket.write(clientFrame(OP_TEXT, Buffer.from(text)));
  }

  /** Drops the connection at once (no close handshake), as `ws`'s `terminate()`. */
  terminate(): void {
    this.readyState = 3;
    this.#socket.destroy();
  }

  #data(chunk: Buffer): void {
    if (this.readyState === 0) {
      const head = this.#head ? Buffer.concat([this.#head, chunk]) : chunk;
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) {
        if (head.length > MAX_HEAD_BYTES) this.terminate();
        else this.#head = Buffer.from(head);
        return;
      }
      this.#head = undefined;
      // "HTTP/1.1 101 Switching Protocols"
      const status = Number(head.toString('latin1', 9, 12));
      if (status !== 101) {
        this.on.refused(status);
        this.terminate();
        return;
      }
      this.readyState = 1;
      if (end + 4 === head.length) return;
      chunk = head.subarray(end + 4);
    }
    if (this.readyState === 1 && !this.#reader.push(chunk)) {
      this.#closeCode = 1002;
      this.terminate();
    }
  }

  #frame(opcode: number, payload: Buffer): void {
    if (opcode === OP_TEXT) {
      this.on.message(payload);
    } else if (opcode === OP_PING) {
      this.#socket.write(clientFrame(0xa, payload));
    } else if (opcode === OP_CLOSE) {
      this.#closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      this.readyState = 2;
      // Answer with the same code, then let the server end the connection.
      this.#socket.end(clientFrame(OP_CLOSE, payload.subarray(0, 2)));
    }
    // Binary frames are not counted (none of the servers sends one); a pong needs nothing.
  }
}
