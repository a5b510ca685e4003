/**
 * What a light client of the load generator reads from a frame without parsing it (bench/lib/worker.ts): the
 * chat messages it delivers, the newest id among them, like-count updates, errors, and the latency marks of
 * load-test messages. Pure, so that its counting is tested on its own (test/unit/scan.test.ts): every target's
 * figures come from it.
 *
 * The frame is scanned as a latin1 string (one character per byte, so offsets are byte offsets), with patterns
 * that begin with a character rare in JSON: V8 looks for a pattern's first character first. `Buffer#indexOf`
 * crossed into C++ once per event (about 40 per frame at 400 messages a second) and took a quarter of each client
 * process; `"type":"` as a string pattern took as long again (9 µs per 10 KB frame), `{"type":"` takes 1.5.
 */
import { LATENCY_MARK, NEW_MESSAGE_MARK, type TargetKind } from './protocol.js';

/** The start of every event object: servers put `type` first, and message objects have no `type`. */
const EVENT = '{"type":"';
/** From the `{` of an event to the digits of the id in `{"type":"new_message","message":{"id":123`. */
const NM_ID_OFFSET = 1 + NEW_MESSAGE_MARK.drawchat.length;
/** The latency mark `"message":"lt:`, found by its rare end and checked backwards (4 µs a frame instead of 9). */
const LAT_END = 'lt:';
const LAT_HEAD = LATENCY_MARK.slice(0, -LAT_END.length);

export interface FrameCounts {
  /** `new_message` events in the frame. */
  messages: number;
  /** The id of the last of them (0 when none). */
  lastId: number;
  /** `session_like_update` events. */
  likeUpdates: number;
  /** Whether an `error` event is in the frame (worth a real parse). */
  errors: boolean;
}

/** Counts a frame's events (`text`: the frame as latin1). Socket.IO frames name the event in an array instead. */
export function scanFrame(text: string, kind: TargetKind): FrameCounts {
  let messages = 0;
  let last = -1;
  let likeUpdates = 0;
  let errors = false;
  let idAt = -1;
  if (kind === 'socketio') {
    const mark = NEW_MESSAGE_MARK.socketio;
    let at = text.indexOf(mark);
    while (at !== -1) {
      messages++;
      last = at;
      at = text.indexOf(mark, at + mark.length);
    }
    if (last !== -1) idAt = last + mark.length;
  } else {
    let at = text.indexOf(EVENT);
    while (at !== -1) {
      const v = at + EVENT.length;
      const c0 = text.charCodeAt(v);
      if (c0 === 0x6e /* n */ && text.charCodeAt(v + 1) === 0x65 /* e */) {
        // new_message","message":{"id":
        messages++;
        last = at;
      } else if (c0 === 0x73 /* s */ && text.charCodeAt(v + 8) === 0x6c /* session_l */) {
        likeUpdates++;
      } else if (c0 === 0x65 /* e */ && text.charCodeAt(v + 1) === 0x72 /* er */) {
        errors = true;
      }
      at = text.indexOf(EVENT, v);
    }
    if (last !== -1) idAt = last + NM_ID_OFFSET;
  }
  return { messages, lastId: idAt === -1 ? 0 : readInt(text, idAt), likeUpdates, errors };
}

function readInt(text: string, from: number): number {
  let n = 0;
  for (let i = from; i < text.length; i++) {
    const d = text.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) break;
    n = n * 10 + d;
  }
  return n;
}

/** Calls `found` with the id of each `new_message` event of a frame (draw-chat or the `ws` baselines), in order. */
export function eachMessageId(text: string, found: (id: number) => void): void {
  const mark = NEW_MESSAGE_MARK.drawchat;
  let at = text.indexOf(EVENT);
  while (at !== -1) {
    if (text.startsWith(mark, at + 1)) found(readInt(text, at + NM_ID_OFFSET));
    at = text.indexOf(EVENT, at + EVENT.length);
  }
}

/** Calls `found` with the send time (ms) and the sender tag's offset of each `"message":"lt:<ms>:<tag>` mark. */
export function eachLatencyMark(text: string, found: (sentAt: number, tagAt: number) => void): void {
  let at = text.indexOf(LAT_END);
  while (at !== -1) {
    const start = at + LAT_END.length;
    if (!text.startsWith(LAT_HEAD, at - LAT_HEAD.length)) {
      at = text.indexOf(LAT_END, start);
      continue;
    }
    const colon = text.indexOf(':', start);
    if (colon === -1) return;
    const sentAt = Number(text.slice(start, colon));
    if (Number.isFinite(sentAt)) found(sentAt, colon + 1);
    at = text.indexOf(LAT_END, colon);
  }
}

/** What a light client reads from a frame: its text (latin1) and its counts (`ScanCache` reads the rest on demand). */
export interface ScannedFrame {
  readonly kind: TargetKind;
  readonly bytes: Buffer;
  readonly text: string;
  readonly counts: FrameCounts;
  /** Read on demand by `ScanCache.marks` and `messageIds`, kept on the frame (a WeakMap per frame cost GC time). */
  marks: LatencyMark[] | undefined;
  ids: number[] | undefined;
}

/** A latency mark: the send time, and where the sender's tag starts in the frame's text. */
export type LatencyMark = readonly [sentAt: number, tagAt: number];

/**
 * The last frames scanned in a generator process, newest first. Every socket of a room gets a tick's frame as the
 * same bytes (the servers serialise a tick once), so a process of a thousand light clients scanned the same bytes
 * a thousand times a tick: the scans were about a third of the generator's CPU. A frame equal to a kept one (kind,
 * length, then the bytes: a `memcmp`) reuses what was read from it; `scanFrame` is a function of the bytes alone,
 * so the figures are the same. A few are kept: sockets that fell behind still read the tick before.
 *
 * Frames under `minBytes` (1 KB) are scanned as they come and not kept: one event each (seed-style clients, the
 * per-message baseline), a tick's worth of them goes to every socket in turn, more distinct frames than are kept,
 * so every one missed, and paid a copy on top of its scan (draw-chat's seed-style fan-out read 84 msg/s instead of
 * 283). A frame that small scans in about the time the comparisons take.
 */
export class ScanCache {
  readonly #kept: ScannedFrame[] = [];

  constructor(
    private readonly size = 4,
    private readonly minBytes = 1024,
  ) {}

  /** `buf` may be a view into a reused read buffer: what is kept is a copy (`bytes` of an unkept frame is `buf`). */
  scan(buf: Buffer, kind: TargetKind): ScannedFrame {
    const keep = buf.length >= this.minBytes;
    if (keep) {
      for (const kept of this.#kept) {
        if (kept.kind === kind && kept.bytes.length === buf.length && kept.bytes.equals(buf)) return kept;
      }
    }
    const text = buf.toString('latin1');
    const frame: ScannedFrame = {
      kind,
      bytes: keep ? Buffer.from(buf) : buf,
      text,
      counts: scanFrame(text, kind),
      marks: undefined,
      ids: undefined,
    };
    if (keep) {
      this.#kept.unshift(frame);
      if (this.#kept.length > this.size) this.#kept.pop();
    }
    return frame;
  }

  /**
   * The latency marks of a scanned frame (`eachLatencyMark`), read once per frame, and only when asked: most light
   * clients do not sample latency.
   */
  marks(frame: ScannedFrame): readonly LatencyMark[] {
    if (!frame.marks) {
      const found: LatencyMark[] = [];
      if (frame.counts.messages > 0)
        eachLatencyMark(frame.text, (sentAt, tagAt) => found.push([sentAt, tagAt]));
      frame.marks = found;
    }
    return frame.marks;
  }

  /** The ids of a scanned frame's `new_message` events, in order (`eachMessageId`), read once per frame. */
  messageIds(frame: ScannedFrame): readonly number[] {
    if (!frame.ids) {
      const found: number[] = [];
      eachMessageId(frame.text, (id) => found.push(id));
      frame.ids = found;
    }
    return frame.ids;
  }
}
