/**
 * `npx tsx bench/client-cost.ts`: what the client library (`src/client`, the widget's and the SDK's
 * `ChatClient`) costs per event it receives, against the least a client can do with the same frames (a
 * `JSON.parse` and the protocol's compiled schema check per event, as the library does it), in the same
 * process, and for reference the same with the schema interpreted (`ServerEventSchema`, as the library checked
 * events until `ServerEventParser`). Batch frames of 40 `new_message` events, as a busy room sends every 100
 * ms; five rounds, alternating the three, and the median of each.
 */
import { ChatClient } from '../src/client/index.js';
import type { WebSocketLike } from '../src/client/types.js';
import { ServerEventParser, ServerEventSchema } from '../src/protocol/messages.js';
import { median } from './lib/hist.js';

const FRAMES = 2000;
const PER_FRAME = 40;

let socket: WebSocketLike | undefined;
/** A socket that opens at once and receives what the benchmark hands to `onmessage`. */
class MemoryWs implements WebSocketLike {
  readyState = 1;
  onopen: WebSocketLike['onopen'] = null;
  onmessage: WebSocketLike['onmessage'] = null;
  onclose: WebSocketLike['onclose'] = null;
  onerror: WebSocketLike['onerror'] = null;
  constructor(_url: string) {
    socket = this;
    setTimeout(() => this.onopen?.({}), 0);
  }
  send(): void {}
  close(): void {}
}

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
const token = `${b64({ alg: 'RS256' })}.${b64({ sub: 'me', exp: Math.floor(Date.now() / 1000) + 3600 })}.x`;
const now = new Date().toISOString();
const session = {
  id: 1,
  draw_time: now,
  starts_at: now,
  ends_at: now,
  is_active: true,
  total_likes: 0,
  viewer_count: 1,
};
const status = {
  enabled: true,
  is_active: true,
  phase: 'pre_draw',
  server_time: now,
  next_draw_time: now,
  opens_at: now,
  closes_at: now,
  session,
  settings: { max_messages_per_minute: 10, history_limit: 100, max_message_length: 500 },
};
const init = {
  type: 'init',
  session,
  you: { user_id: 'me', username: 'me', profile_pic: null, is_host: false, is_winner: false },
  viewer_count: 1,
  total_likes: 0,
  epoch: 'e',
  messages: [],
};
let nextId = 1;
const message = () => {
  const id = nextId++;
  return {
    type: 'new_message',
    message: {
      id,
      session_id: 1,
      user_id: `u${id % 200}`,
      username: `Viewer ${id % 200}`,
      profile_pic: null,
      is_winner: false,
      is_host: false,
      message: `message number ${id} of the benchmark`,
      created_at: now,
      likes: 0,
      client_msg_id: `c${id}`,
    },
  };
};

const chat = new ChatClient({
  baseUrl: 'http://127.0.0.1:1',
  sessionId: 1,
  getToken: () => token,
  WebSocket: MemoryWs,
  fetch: async () => ({ ok: true, status: 200, json: async () => status }),
});
chat.subscribe(() => chat.getSnapshot());
chat.start();
for (let i = 0; i < 100 && !socket; i++) await new Promise((r) => setTimeout(r, 10));
if (!socket?.onmessage) throw new Error(`the client did not connect: ${JSON.stringify(chat.getSnapshot())}`);
socket.onmessage({ data: JSON.stringify(init) });

/**
 * Fresh frames for each round, ids going on from the last round's: every round measures what a live room sends,
 * messages newer than any kept. (Frames reused across rounds put old ids in front of the kept ones from the
 * second round on, a path no server takes.)
 */
const framesOfRound = () =>
  Array.from({ length: FRAMES }, () => JSON.stringify(Array.from({ length: PER_FRAME }, message)));
const events = FRAMES * PER_FRAME;
const usPerEvent = (run: () => void) => {
  const t0 = performance.now();
  run();
  return ((performance.now() - t0) * 1000) / events;
};
const clientUs: number[] = [];
const bareUs: number[] = [];
const interpretedUs: number[] = [];
for (let round = 1; round <= 5; round++) {
  const frames = framesOfRound();
  const client = usPerEvent(() => {
    for (const data of frames) socket!.onmessage!({ data });
  });
  const bare = usPerEvent(() => {
    for (const data of frames) for (const e of JSON.parse(data) as unknown[]) ServerEventParser.safeParse(e);
  });
  const interpreted = usPerEvent(() => {
    for (const data of frames) for (const e of JSON.parse(data) as unknown[]) ServerEventSchema.safeParse(e);
  });
  clientUs.push(client);
  bareUs.push(bare);
  interpretedUs.push(interpreted);
  console.log(
    `round ${round}: ChatClient ${client.toFixed(2)} µs per event; JSON.parse + compiled schema check ${bare.toFixed(2)} µs; ratio ${(client / bare).toFixed(2)}; JSON.parse + interpreted check ${interpreted.toFixed(2)} µs`,
  );
}
console.log(
  `median: ChatClient ${median(clientUs).toFixed(2)} µs per event, JSON.parse + compiled schema check ${median(bareUs).toFixed(2)} µs, JSON.parse + interpreted check ${median(interpretedUs).toFixed(2)} µs`,
);
const shown = chat.getSnapshot();
if (shown.invalidEvents !== 0 || shown.messages.length === 0)
  throw new Error('the client rejected the frames');
chat.stop();
process.exit(0);
