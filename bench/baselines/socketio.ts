/**
 * Baseline 2: the usual way to build this with Socket.IO 4. Every socket joins one room; a `message` event
 * becomes a `new_message` event with draw-chat's fields (the same bytes per delivery, as in the raw `ws`
 * baseline: `client_msg_id` echoed when given, `?user=&name=` as `user_id` and `username`), sent with
 * `io.to(room).emit` (Socket.IO encodes a broadcast once and writes it to each socket). No storage, no auth.
 * WebSocket transport as clients ask for it (the long-polling fallback stays enabled, as in a default
 * deployment).
 *
 * Prints one JSON line with its URL when listening. Not a product: a yardstick for bench/run.ts.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Server } from 'socket.io';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
  },
});

const http = createServer();
const io = new Server(http, { serveClient: false, perMessageDeflate: false, maxHttpBufferSize: 16 * 1024 });
const ROOM = 'draw';
let nextId = 0;

io.on('connection', (socket) => {
  const user = String(socket.handshake.query.user ?? socket.id);
  const username = String(socket.handshake.query.name ?? user);
  void socket.join(ROOM);
  socket.emit('init', { messages: [] });
  socket.on('message', (payload: { message?: unknown; client_msg_id?: unknown }) => {
    if (typeof payload?.message !== 'string') return;
    io.to(ROOM).emit('new_message', {
      id: ++nextId,
      session_id: 1,
      user_id: user,
      username,
      profile_pic: null,
      is_winner: false,
      is_host: false,
      message: payload.message,
      created_at: new Date().toISOString(),
      likes: 0,
      client_msg_id: typeof payload.client_msg_id === 'string' ? payload.client_msg_id : undefined,
    });
  });
});

http.listen(Number(values.port), values.host, () => {
  const { port } = http.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ url: `http://${values.host}:${port}` })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
