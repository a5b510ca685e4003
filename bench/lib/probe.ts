/**
 * Preloaded into a draw-chat server under test (`node --import tsx --import ./bench/lib/probe.ts src/main.ts`),
 * outside the product: counts database statements executed (better-sqlite3 statement runs, pg `Client#query`;
 * not `prepare`, which the store does once per statement text) and RS256 signature checks (`node:crypto`
 * `verify`, WebCrypto `subtle.verify`), watches the event-loop delay, and answers `{ probe: … }` when the parent
 * sends 'probe' over the IPC channel (the delay figures cover the time since the previous question). It changes
 * nothing else.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const require = createRequire(import.meta.url);
/**
 * `dbQueries`: every statement. `dbOutsideTx`: on SQLite, those outside a transaction (BEGIN … COMMIT: the group
 * commits that store the traffic), i.e. what answering clients reads. On PostgreSQL every query counts as both
 * (a pooled client does not say whether it is in a transaction).
 */
const counts = { dbQueries: 0, dbOutsideTx: 0, signatureChecks: 0 };

type Method = (...args: unknown[]) => unknown;
const Sqlite = require('better-sqlite3') as new (
  path: string,
) => {
  prepare(sql: string): object;
  close(): void;
};
// better-sqlite3 does not export its Statement class: reach its prototype through a statement.
const scratch = new Sqlite(':memory:');
const statementProto = Object.getPrototypeOf(scratch.prepare('select 1')) as Record<string, Method>;
scratch.close();
for (const name of ['run', 'get', 'all', 'iterate']) {
  const original = statementProto[name]!;
  statementProto[name] = function (
    this: { database: { inTransaction: boolean }; source: string },
    ...args: unknown[]
  ) {
    counts.dbQueries++;
    if (!this.database.inTransaction && !/^\s*begin/i.test(this.source)) counts.dbOutsideTx++;
    return original.apply(this, args);
  };
}

const pg = require('pg') as { Client: { prototype: { query: (...args: unknown[]) => unknown } } };
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: unknown, ...args: unknown[]) {
  counts.dbQueries++;
  counts.dbOutsideTx++;
  return query.apply(this, args);
};

// The verifier checks signatures with `node:crypto`'s `verify` (imported by name: the change reaches the binding
// through syncBuiltinESMExports); WebCrypto's is counted too, should anything use it.
const nodeCrypto = require('node:crypto') as { verify: Method };
const nodeVerify = nodeCrypto.verify;
nodeCrypto.verify = function (this: unknown, ...args: unknown[]) {
  counts.signatureChecks++;
  return nodeVerify.apply(this, args);
};
syncBuiltinESMExports();
const subtle = globalThis.crypto.subtle as unknown as { verify: (...args: unknown[]) => Promise<boolean> };
const verify = subtle.verify;
subtle.verify = function (this: unknown, ...args: unknown[]) {
  counts.signatureChecks++;
  return verify.apply(this, args);
};

const delay = monitorEventLoopDelay({ resolution: 10 });
delay.enable();

/** CPU profile of a chosen stretch (e.g. only the fan-out phase), unlike `--cpu-prof` (the whole process). */
let inspector: Session | undefined;
function profile(action: 'start' | 'stop', file?: string): void {
  if (action === 'start') {
    inspector = new Session();
    inspector.connect();
    inspector.post('Profiler.enable', () => inspector?.post('Profiler.start'));
    return;
  }
  const s = inspector;
  inspector = undefined;
  s?.post('Profiler.stop', (err, result) => {
    if (!err && file) writeFileSync(file, JSON.stringify(result.profile));
    s.disconnect();
    process.send?.({ profiled: file ?? null });
  });
}

if (process.send) {
  process.on('message', (m: unknown) => {
    const cmd = m as { profile?: 'start' | 'stop'; file?: string };
    if (cmd && typeof cmd === 'object' && cmd.profile) return profile(cmd.profile, cmd.file);
    if (m !== 'probe') return;
    const ms = (ns: number) => Math.round(ns / 1e4) / 100;
    const loop = { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) };
    delay.reset();
    process.send?.({ probe: { ...counts, loop } });
  });
  process.channel?.unref();
}
