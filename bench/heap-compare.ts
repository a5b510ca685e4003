/**
 * `npx tsx bench/heap-compare.ts <more.heapsnapshot> <fewer.heapsnapshot> --per N [--top 30]`: what one more
 * connection costs on the heap, by constructor. Take two snapshots of one kind of server with different numbers of
 * idle sockets (e.g. 2,000 and 500, so N = 1,500; `node --heapsnapshot-signal=SIGUSR2 …`, see docs/BENCHMARKS.md),
 * and this prints, per object type and constructor name, the self size added per connection and how many objects
 * of it each connection adds. What a server holds anyway (code, modules, caches) cancels out.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

type Totals = Map<string, { count: number; bytes: number }>;

/** Self size and count per `type:name` (strings, code and numbers by type alone: their names are their contents). */
export function totalsByConstructor(snapshot: HeapSnapshot): Totals {
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const byName = new Set(['object', 'closure', 'array', 'hidden', 'object shape', 'native', 'synthetic']);
  const totals: Totals = new Map();
  const { nodes, strings } = snapshot;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt]!]!;
    const key = byName.has(type) ? `${type}: ${strings[nodes[i + nameAt]!]!.slice(0, 50)}` : type;
    const t = totals.get(key) ?? { count: 0, bytes: 0 };
    t.count++;
    t.bytes += nodes[i + sizeAt]!;
    totals.set(key, t);
  }
  return totals;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { per: { type: 'string' }, top: { type: 'string', default: '30' } },
  });
  const [more, fewer] = positionals;
  const per = Number(values.per);
  if (!more || !fewer || !(per > 0)) {
    console.error('usage: npx tsx bench/heap-compare.ts <more.heapsnapshot> <fewer.heapsnapshot> --per N');
    process.exit(2);
  }
  const a = totalsByConstructor(JSON.parse(readFileSync(more, 'utf8')) as HeapSnapshot);
  const b = totalsByConstructor(JSON.parse(readFileSync(fewer, 'utf8')) as HeapSnapshot);
  const rows = [...new Set([...a.keys(), ...b.keys()])].map((key) => {
    const x = a.get(key) ?? { count: 0, bytes: 0 };
    const y = b.get(key) ?? { count: 0, bytes: 0 };
    return { key, bytes: (x.bytes - y.bytes) / per, count: (x.count - y.count) / per };
  });
  rows.sort((p, q) => q.bytes - p.bytes);
  const total = rows.reduce((n, r) => n + r.bytes, 0);
  console.log(`heap per connection: ${Math.round(total)} bytes (over ${per} connections)\n`);
  console.log('| bytes/conn | objects/conn | type: constructor |\n|---:|---:|---|');
  for (const r of rows.slice(0, Number(values.top))) {
    console.log(`| ${Math.round(r.bytes)} | ${r.count.toFixed(1)} | \`${r.key}\` |`);
  }
}
