/**
 * One draw, 30 minutes after this module was loaded (once per test file), and no schedule: the chat window of
 * every server a test file starts on the real clock (in process or as a child process) is the same one, open from
 * the file's start for 90 minutes with the default hour before and after. On the default hourly schedule windows
 * hand over at hh:30, and a test running across that moment saw its session close halfway (`chat_closed`, 4409:
 * H-FAULT-07 failed so in a clean-clone CI run at 08:30). One instant for the whole file, so that nodes started a
 * minute apart still agree on their session.
 */
const DRAW_TIME = new Date(Math.ceil((Date.now() + 30 * 60_000) / 60_000) * 60_000).toISOString();

/** `DRAW_TIMES` for a server on the real clock; nothing when `env` sets a schedule or draw times of its own. */
export function steadyWindowEnv(env: Record<string, string> = {}): Record<string, string> {
  if (env.DRAW_SCHEDULE !== undefined || env.DRAW_TIMES !== undefined) return {};
  return { DRAW_TIMES: DRAW_TIME };
}
