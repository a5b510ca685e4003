import { describe, expect, it } from 'vitest';
import { clientFrame, FrameReader } from '../../bench/lib/raw-ws.js';

/** A server frame (unmasked), as `ws` writes them. */
function serverFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const len = payload.length;
  const head = len < 126 ? 2 : len < 65_536 ? 4 : 10;
  const frame = Buffer.alloc(head + len);
  frame[0] = (fin ? 0x80 : 0) | opcode;
  if (len < 126) frame[1] = len;
  else if (len < 65_536) {
    frame[1] = 126;
    frame.writeUInt16BE(len, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(len), 2);
  }
  payload.copy(frame, head);
  return frame;
}

function read(chunks: Buffer[]): { frames: Array<[number, string]>; ok: boolean } {
  const frames: Array<[number, string]> = [];
  const reader = new FrameReader((op, payload) => frames.push([op, payload.toString()]));
  let ok = true;
  for (const c of chunks) ok &&= reader.push(c);
  return { frames, ok };
}

describe('Load generator: the light clients’ WebSocket framing (bench/lib/raw-ws.ts)', () => {
  const long = 'x'.repeat(300);
  const huge = 'y'.repeat(70_000);
  const stream = Buffer.concat([
    serverFrame(0x1, Buffer.from('{"type":"init"}')),
    serverFrame(0x9, Buffer.from('p')),
    serverFrame(0x1, Buffer.from(long)),
    serverFrame(0x1, Buffer.from('frag-'), false),
    serverFrame(0x0, Buffer.from('ment'), true),
    serverFrame(0x1, Buffer.from(huge)),
    serverFrame(0x8, Buffer.from([0x11, 0x98])), // 4504
  ]);
  const expected: Array<[number, string]> = [
    [0x1, '{"type":"init"}'],
    [0x9, 'p'],
    [0x1, long],
    [0x1, 'frag-ment'],
    [0x1, huge],
    [0x8, Buffer.from([0x11, 0x98]).toString()],
  ];

  it('reads every frame whole, however the bytes are split into chunks', () => {
    expect(read([stream])).toEqual({ frames: expected, ok: true });
    for (const size of [1, 2, 3, 7, 126, 1000, 65_536]) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < stream.length; at += size) chunks.push(stream.subarray(at, at + size));
      expect(read(chunks), `chunks of ${size}`).toEqual({ frames: expected, ok: true });
    }
  });

  it('reads right from one read buffer reused for every chunk (what it keeps between chunks is copied)', () => {
    const threePieces = Buffer.concat([
      serverFrame(0x1, Buffer.from('one-'), false),
      serverFrame(0x0, Buffer.from('two-'), false),
      serverFrame(0x0, Buffer.from('three'), true),
    ]);
    const all = Buffer.concat([stream, threePieces]);
    const want: Array<[number, string]> = [...expected, [0x1, 'one-two-three']];
    for (const size of [1, 3, 7, 126, 1000, 65_536]) {
      const scratch = Buffer.alloc(size);
      const frames: Array<[number, string]> = [];
      const reader = new FrameReader((op, payload) => frames.push([op, payload.toString()]));
      let ok = true;
      for (let at = 0; at < all.length; at += size) {
        const n = all.copy(scratch, 0, at, at + size);
        ok &&= reader.push(scratch.subarray(0, n));
        scratch.fill(0xff); // the next read overwrites the buffer
      }
      expect({ frames, ok }, `chunks of ${size}`).toEqual({ frames: want, ok: true });
    }
  });

  it('a frame split between reads costs a copy of that frame alone, not of the reads it spans', () => {
    // A generator that falls behind reads 64 KB at a time, and most reads end inside a frame.
    const frames = Array.from({ length: 40 }, (_, i) => serverFrame(0x1, Buffer.alloc(10_000 + i, 0x61)));
    const all = Buffer.concat(frames);
    const reader = new FrameReader(() => {});
    const size = 64 * 1024;
    let split = 0;
    let frameEnd = 0;
    for (const f of frames) {
      const frameStart = frameEnd;
      frameEnd += f.length;
      // A frame split by a read boundary is kept, whole, once.
      if (Math.floor(frameStart / size) !== Math.floor((frameEnd - 1) / size)) split += f.length;
    }
    for (let at = 0; at < all.length; at += size) expect(reader.push(all.subarray(at, at + size))).toBe(true);
    expect(split).toBeGreaterThan(0);
    expect(reader.copiedBytes).toBeLessThanOrEqual(split);
  });

  it('refuses what no server sends: a masked frame, a control frame over 125 bytes, a stray continuation', () => {
    const masked = serverFrame(0x1, Buffer.from('hi'));
    masked[1]! |= 0x80;
    expect(read([masked]).ok).toBe(false);
    expect(read([serverFrame(0x9, Buffer.alloc(126))]).ok).toBe(false);
    expect(read([serverFrame(0x0, Buffer.from('x'))]).ok).toBe(false);
  });

  it('writes masked client frames with a zero key, for every length encoding', () => {
    for (const n of [0, 125, 126, 65_535, 65_536]) {
      const payload = Buffer.alloc(n, 0x61);
      const frame = clientFrame(0x1, payload);
      const head = n < 126 ? 2 : n < 65_536 ? 4 : 10;
      expect(frame[0]).toBe(0x81);
      expect(frame[1]! & 0x80, 'mask bit').toBe(0x80);
      const len = frame[1]! & 0x7f;
      const decoded =
        len < 126 ? len : len === 126 ? frame.readUInt16BE(2) : Number(frame.readBigUInt64BE(2));
      expect(decoded, `length ${n}`).toBe(n);
      expect([...frame.subarray(head, head + 4)]).toEqual([0, 0, 0, 0]);
      expect(frame.subarray(head + 4).equals(payload)).toBe(true);
    }
  });
});
