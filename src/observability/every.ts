/**
 * A gate for lines that every request would otherwise log during an outage: true at most once per `ms`
 * (monotonic time), false in between.
 */
export function everyMs(ms: number): () => boolean {
  let last = Number.NEGATIVE_INFINITY;
  return () => {
    const now = performance.now();
    if (now - last < ms) return false;
    last = now;
    return true;
  };
}
