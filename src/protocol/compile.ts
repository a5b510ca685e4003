import { z } from 'zod';

/**
 * A protocol schema compiled for a hot path (`z.compile`, zod 4.5 and later): one generated function per schema
 * instead of a walk over its nodes, with the same results and the same issues (an input the generated code
 * rejects is parsed again by the interpreter, which reports the issues). Where `new Function` is refused,
 * `z.compile` hands back the schema itself.
 *
 * The browser bundles (web/) replace this module with web/src/protocol-compile.ts, which hands every schema back
 * as it is: the compiler would add about 7 KB (gzip) to the embed bundle and try `new Function` on pages whose
 * Content-Security-Policy refuses it, for a saving of under a microsecond per event, which a browser's
 * rendering dwarfs. Node.js (the server, the client library in bots and the load generator) gets the compiled
 * checks.
 */
export function compiled<T extends z.ZodType>(schema: T): T {
  return z.compile(schema);
}
