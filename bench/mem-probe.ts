// Scratch: per-connection heap by constructor (not committed).
import { writeHeapSnapshot } from 'node:v8';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { fork } from 'node:child_process';
import { startServer } from '../test/support/server.js';
const N = 2000;
const t = await startServer({ env: { LOG_LEVEL: 'warn', LIVE_CHAT_MAX_CONNECTS_PER_ADDRESS_PER_MINUTE: '100000000' } });
const tokens = await Promise.all(Array.from({ length: N }, (_, i) => t.token(`m${i}`)));
const sid = await t.sessionId(tokens[0]!);
function snap(): Map<string, { n: number; size: number }> {
  (globalThis as any).gc?.();
  const file = writeHeapSnapshot('/tmp/mem.heapsnapshot');
  const s = JSON.parse(readFileSync(file, 'utf8'));
  const f = s.snapshot.meta.node_fields as string[]; const types = s.snapshot.meta.node_types[0] as string[];
  const nf = f.length, ti = f.indexOf('type'), ni = f.indexOf('name'), si = f.indexOf('self_size');
  const m = new Map<string, { n: number; size: number }>();
  for (let i = 0; i < s.nodes.length; i += nf) {
    const key = `${types[s.nodes[i + ti]]}:${s.strings[s.nodes[i + ni]]}`.slice(0, 60);
    const e = m.get(key) ?? { n: 0, size: 0 }; e.n++; e.size += s.nodes[i + si]; m.set(key, e);
  }
  return m;
}
const before = snap();
const url = t.url.replace('http', 'ws');
const child = fork(new URL('./mem-client.ts', import.meta.url).pathname, [url, String(sid)], { execArgv: ['--import', 'tsx'] });
child.send(tokens);
await new Promise((r) => child.once('message', r));
await new Promise((r) => setTimeout(r, 2500));
const after = snap();
const rows = [...after].map(([k, v]) => ({ k, dn: v.n - (before.get(k)?.n ?? 0), ds: v.size - (before.get(k)?.size ?? 0) })).filter((r) => r.ds > 0).sort((a, b) => b.ds - a.ds);
const total = rows.reduce((a, r) => a + r.ds, 0);
console.log('heap growth per connection (bytes):', (total / N).toFixed(0));
for (const r of rows.slice(0, 25)) console.log(String((r.ds / N).toFixed(0)).padStart(6), String((r.dn / N).toFixed(2)).padStart(6), r.k);
child.kill();
await t.close();
process.exit(0);
