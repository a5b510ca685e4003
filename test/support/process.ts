import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { steadyWindowEnv } from './window.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface NodeProcess {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  /** Resolves with the base URL once the server logs that it listens. */
  url: Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs a TypeScript entry point of this repository as its own process (through tsx), with a clean env. */
export function runScript(script: string, env: Record<string, string>, args: string[] = []): NodeProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...steadyWindowEnv(env), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  let onUrl: (url: string) => void;
  let onFail: (err: Error) => void;
  const url = new Promise<string>((resolve, reject) => {
    onUrl = resolve;
    onFail = reject;
  });
  url.catch(() => {});
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout.push(chunk);
    const m = /"url":"(http:\/\/[^"]+)"/.exec(chunk);
    if (m) onUrl(m[1]!);
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      onFail(new Error(`process exited (${code ?? signal}) before listening: ${stderr.join('')}`));
      resolve({ code, signal });
    });
  });
  return { child, stdout, stderr, url, exited };
}
