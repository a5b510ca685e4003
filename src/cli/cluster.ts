import 'dotenv/config';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadSettings, SettingsError } from '../config/settings.js';
import { loadOrCreateDevKeys } from '../http/auth/dev-auth.js';
import { createChatStore } from '../store/kysely-store.js';

/**
 * `npm run cluster -- --nodes 3`: several draw-chat nodes on consecutive ports against the configured database
 * and Redis, and nginx in front of them on PORT (default 8000). Ctrl-C stops them all.
 */
const HELP = `usage: npm run cluster -- [--nodes 3] [--port 8000] [--base-port <port+1>] [--no-nginx]
  DATABASE_URL and REDIS_URL come from the environment (REDIS_URL defaults to redis://127.0.0.1:6379).`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string', default: '3' },
      port: { type: 'string' },
      'base-port': { type: 'string' },
      'no-nginx': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  const count = Number(values.nodes);
  if (!Number.isInteger(count) || count < 1 || count > 64) throw new SettingsError('--nodes must be 1 to 64');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    REDIS_URL: process.env.REDIS_URL || 'redis://127.0.0.1:6379',
  };
  const settings = loadSettings(env);
  const lbPort = Number(values.port ?? settings.port);
  const basePort = Number(values['base-port'] ?? lbPort + 1);
  if (settings.databaseUrl.startsWith('sqlite:')) {
    log(`DATABASE_URL is SQLite (${settings.databaseUrl}): fine on one machine; production runs PostgreSQL.`);
  }

  // Once, before the nodes start: migrations, and the dev signing key every node must share.
  const store = createChatStore(settings.databaseUrl);
  try {
    await store.migrate();
  } finally {
    await store.close();
  }
  if (settings.devAuth) await loadOrCreateDevKeys(settings.dataDir);

  const here = fileURLToPath(new URL('.', import.meta.url));
  const main = join(here, '..', import.meta.url.endsWith('.ts') ? 'main.ts' : 'main.js');
  const children: ChildProcess[] = [];
  const upstreams: string[] = [];
  for (let i = 0; i < count; i++) {
    const port = basePort + i;
    upstreams.push(`127.0.0.1:${port}`);
    const child = spawn(process.execPath, [...process.execArgv, main], {
      env: {
        ...env,
        PORT: String(port),
        HOST: '127.0.0.1',
        DATA_DIR: settings.dataDir,
        TRUST_PROXY: env.TRUST_PROXY || '127.0.0.1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    prefixLines(child, `node${i + 1}`);
    children.push(child);
  }

  let nginx: ChildProcess | undefined;
  let nginxDir: string | undefined;
  if (!values['no-nginx']) {
    if (spawnSync('nginx', ['-v']).error) {
      log('nginx is not installed (apt-get install nginx): running the nodes without a load balancer.');
    } else {
      nginxDir = mkdtempSync(join(tmpdir(), 'drawchat-nginx-'));
      for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(nginxDir, d));
      const template = readFileSync(join(here, '..', '..', 'deploy', 'nginx.conf'), 'utf8');
      const conf = template
        .replaceAll('{{PREFIX}}', nginxDir)
        .replaceAll('{{LISTEN}}', `${settings.host}:${lbPort}`)
        .replaceAll(
          '{{SERVERS}}',
          upstreams.map((u) => `    server ${u} max_fails=1 fail_timeout=2s;`).join('\n'),
        );
      writeFileSync(join(nginxDir, 'nginx.conf'), conf);
      nginx = spawn('nginx', ['-p', nginxDir, '-c', join(nginxDir, 'nginx.conf'), '-g', 'daemon off;'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      prefixLines(nginx, 'nginx');
    }
  }
  log(
    `${count} node(s) on ${upstreams.join(', ')}${nginx ? `; load balancer on http://${settings.host}:${lbPort}` : ''}`,
  );

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    log('stopping');
    nginx?.kill('SIGQUIT');
    for (const c of children) c.kill('SIGTERM');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const all = [...children, ...(nginx ? [nginx] : [])];
  await Promise.all(
    all.map(
      (c) =>
        new Promise<void>((resolve) => {
          c.on('exit', (code, signal) => {
            if (!stopping) {
              log(`a process exited (${code ?? signal}); stopping the others`);
              process.exitCode = 1;
              stop();
            }
            resolve();
          });
        }),
    ),
  );
  if (nginxDir) rmSync(nginxDir, { recursive: true, force: true });
}

function log(line: string): void {
  process.stdout.write(`[cluster] ${line}\n`);
}

function prefixLines(child: ChildProcess, name: string): void {
  for (const stream of [child.stdout, child.stderr]) {
    let rest = '';
    stream?.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) process.stdout.write(`[${name}] ${line}\n`);
    });
  }
}

main().catch((err) => {
  process.stderr.write(`cluster: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
