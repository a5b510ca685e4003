import { describe, expect, it } from 'vitest';
import { eachLatencyMark, eachMessageId, scanFrame } from '../../bench/lib/scan.js';
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
