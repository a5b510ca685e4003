import { describe, expect, it } from 'vitest';
import { eachLatencyMark, eachMessageId, ScanCache, scanFrame } from '../../bench/lib/scan.js';
import type { ServerEventOf } from '../../src/protocol/messages.js';

/** A `new_message` event as every target serialises it (`type` first), held to the protocol's type. */
const message = (id: number, text: string, user = 'bench-1'): ServerEventOf<'new_message'> => ({
  type: 'new_message',
  message: {
    id,
    session_id: 1,
    user_id: user,
    username: user,
    profile_pic: null,
    is_winner: false,
    is_host: false,
    message: text,
    created_at: '2030-01-01T00:00:00.000Z',
    likes: 0,
  },
});
const latin1 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('latin1');

describe('Load generator: what light clients count in a frame (bench/lib/scan.ts)', () => {
  it('counts the messages of a batch frame, its last id, like updates and errors', () => {
    const frame = latin1([
      message(7, 'lt:1700000000000:0.5.1'),
      { type: 'session_like_update', session_id: 1, total_likes: 3 },
      { type: 'viewer_count_update', session_id: 1, viewer_count: 9 },
      message(8, 'hello'),
      { type: 'message_like_update', session_id: 1, message_id: 7, likes: 1 },
      message(12, 'ünïcödé 🎉 text'),
    ]);
    expect(scanFrame(frame, 'drawchat')).toEqual({ messages: 3, lastId: 12, likeUpdates: 1, errors: false });
    const withError = latin1([
      { type: 'error', code: 'rate_limited', message: 'slow down' },
      message(13, 'x'),
    ]);
    expect(scanFrame(withError, 'drawchat')).toEqual({
      messages: 1,
      lastId: 13,
      likeUpdates: 0,
      errors: true,
    });
  });

  it('counts one event per frame (seed-style clients, the ws baseline) and frames without messages', () => {
    expect(scanFrame(latin1(message(41, 'one')), 'drawchat')).toMatchObject({ messages: 1, lastId: 41 });
    expect(scanFrame(latin1(message(42, 'one')), 'ws')).toMatchObject({ messages: 1, lastId: 42 });
    expect(
      scanFrame(latin1({ type: 'viewer_count_update', session_id: 1, viewer_count: 2 }), 'drawchat'),
    ).toEqual({ messages: 0, lastId: 0, likeUpdates: 0, errors: false });
  });

  it('is not fooled by event-like text inside a message (JSON escapes its quotes)', () => {
    const sly = '{"type":"new_message","message":{"id":999}} and {"type":"error"} and "message":"lt:5:x';
    const frame = latin1([message(3, sly), message(4, 'lt:1700000000000:tag')]);
    expect(scanFrame(frame, 'drawchat')).toEqual({ messages: 2, lastId: 4, likeUpdates: 0, errors: false });
    const marks: Array<[number, string]> = [];
    eachLatencyMark(frame, (sentAt, tagAt) => marks.push([sentAt, frame.slice(tagAt, tagAt + 3)]));
    expect(marks).toEqual([[1700000000000, 'tag']]);
  });

  it('reads every latency mark and where its sender tag starts, skipping other "lt:" text', () => {
    const frame = latin1([
      message(1, 'lt:1700000000001:0.1.', 'bolt:user'),
      message(2, 'lt:1700000000002:1.7.'),
      message(3, 'no mark: salt:and pepper'),
    ]);
    const marks: Array<[number, string]> = [];
    eachLatencyMark(frame, (sentAt, tagAt) => marks.push([sentAt, frame.slice(tagAt, tagAt + 5)]));
    expect(marks).toEqual([
      [1700000000001, '0.1."'],
      [1700000000002, '1.7."'],
    ]);
  });

  it('lists the id of every message of a frame in order, for the order check of full clients', () => {
    const frame = latin1([
      message(5, 'a'),
      { type: 'viewer_count_update', session_id: 1, viewer_count: 2 },
      message(9, '{"type":"new_message","message":{"id":1}}'),
      message(7, 'b'),
    ]);
    const ids: number[] = [];
    eachMessageId(frame, (id) => ids.push(id));
    expect(ids).toEqual([5, 9, 7]);
    const none: number[] = [];
    eachMessageId(latin1({ type: 'pong', server_time: 'x' }), (id) => none.push(id));
    expect(none).toEqual([]);
  });

  it('counts Socket.IO frames by their event name', () => {
    const sio = (id: number) => `42${JSON.stringify(['new_message', message(id, 'x').message])}`;
    expect(scanFrame(sio(77), 'socketio')).toEqual({
      messages: 1,
      lastId: 77,
      likeUpdates: 0,
      errors: false,
    });
    expect(scanFrame('42["init",{"messages":[]}]', 'socketio')).toMatchObject({ messages: 0, lastId: 0 });
  });
});

describe('Load generator: a frame every socket of a room gets is scanned once a process (ScanCache)', () => {
  const frame = Buffer.from(
    JSON.stringify([message(7, 'lt:1700000000000:0.5.1'), message(8, 'lt:1700000000040:0.6.2')]),
  );

  it('reads the same figures as a scan of its own, and reuses them for the same bytes', () => {
    const cache = new ScanCache(4, 0);
    const first = cache.scan(frame, 'drawchat');
    expect(first.counts).toEqual(scanFrame(frame.toString('latin1'), 'drawchat'));
    expect(cache.marks(first)).toEqual([
      [1700000000000, first.text.indexOf('0.5.1')],
      [1700000000040, first.text.indexOf('0.6.2')],
    ]);
    // Another socket's read of the same frame: the same bytes in another buffer.
    expect(cache.scan(Buffer.from(frame), 'drawchat')).toBe(first);
    // Other bytes, or the same bytes for another kind of target, are scanned afresh.
    const other = Buffer.from(JSON.stringify([message(9, 'hello')]));
    expect(cache.scan(other, 'drawchat').counts).toMatchObject({ messages: 1, lastId: 9 });
    expect(cache.scan(frame, 'socketio')).not.toBe(first);
    // A full client's order check reads the ids, once per frame too.
    expect(cache.messageIds(first)).toEqual([7, 8]);
    expect(cache.messageIds(first)).toBe(cache.messageIds(cache.scan(frame, 'drawchat')));
  });

  it('keeps a copy: the read buffer the frame came in is overwritten by the next read', () => {
    const cache = new ScanCache(4, 0);
    const readBuffer = Buffer.from(frame);
    const first = cache.scan(readBuffer, 'drawchat');
    readBuffer.fill(0x20);
    expect(first.text).toBe(frame.toString('latin1'));
    expect(cache.scan(readBuffer, 'drawchat')).not.toBe(first);
    expect(cache.scan(frame, 'drawchat')).toBe(first);
  });

  it('keeps the last few frames: sockets that fell behind still read the tick before', () => {
    const cache = new ScanCache(2, 0);
    const ticks = [1, 2, 3].map((id) => Buffer.from(JSON.stringify([message(id, `tick ${id}`)])));
    const [a, b] = [cache.scan(ticks[0]!, 'ws'), cache.scan(ticks[1]!, 'ws')];
    expect(cache.scan(ticks[0]!, 'ws')).toBe(a);
    expect(cache.scan(ticks[1]!, 'ws')).toBe(b);
    cache.scan(ticks[2]!, 'ws');
    // Two kept: the oldest went.
    expect(cache.scan(ticks[0]!, 'ws')).not.toBe(a);
  });

  it('keeps big frames only: small ones (one event each) are scanned as they come', () => {
    const cache = new ScanCache();
    const small = Buffer.from(JSON.stringify(message(1, 'lt:1700000000000:0.5.1')));
    expect(small.length).toBeLessThan(1024);
    const a = cache.scan(small, 'ws');
    const b = cache.scan(Buffer.from(small), 'ws');
    expect(b).not.toBe(a);
    expect(b.counts).toEqual(a.counts);
    expect(cache.marks(b)).toEqual(cache.marks(a));
    const big = Buffer.from(
      JSON.stringify(Array.from({ length: 10 }, (_, i) => message(i + 1, 'x'.repeat(100)))),
    );
    expect(big.length).toBeGreaterThanOrEqual(1024);
    expect(cache.scan(Buffer.from(big), 'ws')).toBe(cache.scan(big, 'ws'));
  });
});
