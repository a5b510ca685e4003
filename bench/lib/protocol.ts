/**
 * What the load generator's coordinator (main process) and its client processes tell each other, and the
 * wire details of the three targets (draw-chat, the raw `ws` baseline, the Socket.IO baseline).
 */

export type TargetKind = 'drawchat' | 'ws' | 'socketio';

/** How a client process reaches the target. */
export interface TargetWire {
  kind: TargetKind;
  /** http://host:port of each node; clients are spread over them round robin. */
  urls: string[];
  /** draw-chat: the session to join. */
  sessionId?: number;
  /** draw-chat: `batch=1` array frames (true) or one JSON object per frame (false, seed-style). */
  batch: boolean;
}

/** One simulated viewer. */
export interface ClientSpec {
  /** Global index (0..viewers-1); user `bench-<index>`. */
  index: number;
  token?: string;
  /** Full client: parses and checks every event (draw-chat: the ChatClient library). */
  full: boolean;
  /** Sends messages when the run has a message rate. */
  sender: boolean;
  /** Light client that also records delivery latency (cheap extraction of the timestamp). */
  sample: boolean;
}

/**
 * A connect phase gives up after this many handshakes of one client process timed out: the clients it has not
 * started yet fail as `gave_up`. A server that answers no handshake used to hold a phase for 30 s per
 * `concurrency` clients (12 minutes for 4,700 at 100).
 */
export const GIVE_UP_AFTER_TIMEOUTS = 100;

export type ToWorker =
  | {
      cmd: 'connect';
      wire: TargetWire;
      clients: ClientSpec[];
      /** Handshakes in flight at once in this process. */
      concurrency: number;
      /** A handshake not settled after this long (ms) fails as `timeout`. */
      timeoutMs: number;
    }
  | { cmd: 'rates'; messages: number; hearts: number }
  | { cmd: 'tick' }
  /** Drop every connection at once; each reconnects (resuming with `since`) after a random delay. */
  | { cmd: 'drop'; jitterMs: number }
  | { cmd: 'final' }
  /** Close every client and forget them (the next target). */
  | { cmd: 'reset' }
  | { cmd: 'close' };

export interface TickStats {
  /** `new_message` events received (all clients). */
  deliveries: number;
  frames: number;
  bytes: number;
  /** Messages sent by senders. */
  sent: number;
  /** A sender's own message came back (stored and broadcast). */
  acked: number;
  heartsSent: number;
  likeUpdates: number;
  errors: Record<string, number>;
  closes: Record<string, number>;
  /** Delivery latency (µs), compressed HDR histogram. */
  latency: string;
  /** Send → own echo (µs), compressed HDR histogram. */
  ack: string;
  /** Connect → init (µs) of (re)connections completed during the tick. */
  connect: string;
  connected: number;
  ready: number;
  resumed: number;
}

export interface FinalStats {
  fullClients: number;
  /** Full clients: events that failed the protocol schema. */
  invalidEvents: number;
  /** Full clients: a `new_message` whose id was not above the previous one (out of order or repeated). */
  orderViolations: number;
  /** Full clients: messages tagged by this run that each full client received (min over full clients). */
  fullReceivedMin: number;
  fullReceivedMax: number;
  /**
   * `session_like_update` events per viewer: the most one viewer got in one wall-clock second (transport jitter
   * can put two of them in one), and the highest average rate of a viewer from the first heart until the figures
   * were read.
   */
  likeUpdatesMaxPerSecond: number;
  likeUpdatesMaxAvgPerSecond: number;
  /** The most `session_like_update` events one viewer received in the window. */
  likeUpdatesReceivedMax: number;
  likeUpdateWindowS: number;
  heartsSent: number;
  heartsRefused: number;
  sent: number;
  acked: number;
}

export type FromWorker =
  | { type: 'ready' }
  | { type: 'connected'; ok: number; failed: number; elapsedMs: number; failures: Record<string, number> }
  | { type: 'tick'; stats: TickStats }
  | { type: 'dropped' }
  | { type: 'reset' }
  | { type: 'final'; stats: FinalStats }
  | { type: 'log'; line: string };

/** Byte patterns that mark a delivered chat message in a frame, per target. */
export const NEW_MESSAGE_MARK: Record<TargetKind, string> = {
  drawchat: '"type":"new_message","message":{"id":',
  ws: '"type":"new_message","message":{"id":',
  socketio: '["new_message",{"id":',
};

/** The text of a load-test message: `lt:<send time, ms since the epoch>:<sender tag>`. */
export const LATENCY_MARK = '"message":"lt:';

/**
 * The frame a sender writes for one chat message (`text`, with `tag` as its `client_msg_id`): a JSON command on
 * draw-chat and the `ws` baseline, an Engine.IO `42` event on Socket.IO. Tags and texts are the generator's own
 * (no characters to escape).
 */
export function messageFrame(kind: TargetKind, text: string, tag: string): string {
  const body = `"message":"${text}","client_msg_id":"${tag}"`;
  return kind === 'socketio' ? `42["message",{${body}}]` : `{"type":"message",${body}}`;
}
