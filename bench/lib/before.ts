/**
 * Preloaded (`--import ./bench/lib/before.ts`, after tsx) into a draw-chat server to run it with the fan-out code
 * as it was before the performance work (bench/before/: src/realtime/hub.ts and src/http/ws-socket.ts of the
 * commit the work started from), so the suite can measure before and after in the same run.
 */
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';

const root = new URL('../../', import.meta.url);
const swaps = [
  ['src/realtime/hub.ts', 'bench/before/hub.ts'],
  ['src/http/ws-socket.ts', 'bench/before/ws-socket.ts'],
].map(([from, to]) => [new URL(from!, root).href, new URL(to!, root).href]);

const hooks = `
let swaps = [];
export async function initialize(data) { swaps = data.swaps; }
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  for (const [from, to] of swaps) if (r.url === from) return { ...r, url: to };
  return r;
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`, pathToFileURL('./'), { data: { swaps } });
