/**
 * Baseline 1: the least a Node.js chat can do with the raw `ws` library. One room, no storage, no auth unless
 * asked: a `{type:'message', message, client_msg_id?}` frame becomes a `new_message` event shaped like
 * draw-chat's (the same fields in the same order, `client_msg_id` echoed when given, and the viewer's
 * `?user=&name=` as `user_id` and `username`: the same bytes per delivery, test/e2e/bench-smoke.test.ts),
 * serialised once into a Buffer and written to every socket.
 *
 *   --batch 0     every message goes out at once, one frame per message per viewer (the README broadcast)
 *   --batch 100   messages are gathered and sent every 100 ms as one JSON array frame per viewer
 *   --jwks file   verify an RS256 JWT (`?token=`) on every handshake: the signature with `node:crypto`, as
 *                 draw-chat does (and as jsonwebtoken does), then `exp` and `iss`
 *
 * Prints one JSON line with its URL when listening. Not a product: a yardstick for bench/run.ts.
 */

import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { WebSocket, WebSocketServer } from 'ws';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    batch: { type: 'string', default: '0' },
    jwks: { type: 'string' },
    issuer: { type: 'string', default: 'draw-chat-dev' },
  },
});
const batchMs = Number(values.batch);
/** kid → public key, from the JWKS file. */
const keys = values.jwks
  ? new Map<string, KeyObject>(
      (JSON.parse(readFileSync(values.jwks, 'utf8')) as { keys: Array<{ kid: string }> }).keys.map((jwk) => [
        jwk.kid,
        createPublicKey({ key: jwk, format: 'jwk' }),
      ]),
    )
  : undefined;

/**
 * The token's `sub` and `name` (else `sub`) if it is an RS256 JWT signed by one of `keys`, unexpired, from the
 * issuer; else undefined.
 */
function verifiedUser(token: string): { id: string; name: string } | undefined {
  const [h = '', p = '', sig = ''] = token.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as { alg?: string; kid?: string };
  const key = header.alg === 'RS256' && header.kid !== undefined ? keys?.get(header.kid) : undefined;
  if (!key || !verify('sha256', Buffer.from(`${h}.${p}`), key, Buffer.from(sig, 'base64url')))
    return undefined;
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as {
    sub?: string;
    name?: unknown;
    exp?: number;
    iss?: string;
  };
  if (typeof claims.exp !== 'number' || claims.exp * 1000 <= Date.now() || claims.iss !== values.issuer)
    return undefined;
  const id = String(claims.sub);
  return { id, name: typeof claims.name === 'string' ? claims.name : id };
}

const http = createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server: http, perMessageDeflate: false, maxPayload: 16 * 1024 });
const room = new Set<WebSocket>();
let nextId = 0;
let pending: string[] = [];

function broadcast(data: Buffer): void {
  for (const client of room) if (client.readyState === WebSocket.OPEN) client.send(data, { binary: false });
}

wss.on('connection', async (ws, req) => {
  const url = new URL(req.url ?? '/', 'http://x');
  let user = url.searchParams.get('user') ?? `anon-${nextId}`;
  let username = url.searchParams.get('name') ?? user;
  ws.on('error', () => {});
  if (keys) {
    let verified: { id: string; name: string } | undefined;
    try {
      verified = verifiedUser(url.searchParams.get('token') ?? '');
    } catch {
      verified = undefined;
    }
    if (verified === undefined) {
      ws.close(4401, 'invalid token');
      return;
    }
    user = verified.id;
    username = verified.name;
  }
  if (ws.readyState !== WebSocket.OPEN) return;
  room.add(ws);
  ws.on('close', () => room.delete(ws));
  ws.send('{"type":"init","messages":[]}');
  ws.on('message', (data) => {
    let command: { type?: string; message?: string; client_msg_id?: unknown };
    try {
      command = JSON.parse(data.toString());
    } catch {
      return;
    }
    if (command.type !== 'message' || typeof command.message !== 'string') return;
    const json = JSON.stringify({
      type: 'new_message',
      message: {
        id: ++nextId,
        session_id: 1,
        user_id: user,
        username,
        profile_pic: null,
        is_winner: false,
        is_host: false,
        message: command.message,
        created_at: new Date().toISOString(),
        likes: 0,
        client_msg_id: typeof command.client_msg_id === 'string' ? command.client_msg_id : undefined,
      },
    });
    if (batchMs > 0) pending.push(json);
    else broadcast(Buffer.from(json));
  });
});

if (batchMs > 0) {
  setInterval(() => {
    if (pending.length === 0) return;
    const frame = Buffer.from(`[${pending.join(',')}]`);
    pending = [];
    broadcast(frame);
  }, batchMs);
}

http.listen(Number(values.port), values.host, () => {
  const { port } = http.address() as AddressInfo;
  process.stdout.write(
    `${JSON.stringify({ url: `http://${values.host}:${port}`, batchMs, auth: !!keys })}\n`,
  );
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
