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
