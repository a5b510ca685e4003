/**
 * What the browser bundles use instead of src/protocol/compile.ts (vite.config.ts): the protocol's schemas as
 * they are, interpreted. No generated code, so nothing for a page's Content-Security-Policy to refuse, and no
 * compiler in the bundle.
 */
export function compiled<T>(schema: T): T {
  return schema;
}
