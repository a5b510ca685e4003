import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { createChatStore } from '../../src/store/kysely-store.js';
import { runScript } from '../support/process.js';
import { TestClient } from '../support/ws-client.js';

// The real entry points as separate processes: start-up checks, graceful shutdown, logs, migrations.
describe('the draw-chat process', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'drawchat-proc-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it.each([
    [{ LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE: '0' }, 'LIVE_CHAT_MAX_MESSAGES_PER_USER_PER_MINUTE'],
    [{ DRAW_TIMEZONE: 'Mars/Olympus' }, 'DRAW_TIMEZONE'],
    [{ DRAW_SCHEDULE: 'every friday' }, 'DRAW_SCHEDULE'],
    [{ DATABASE_URL: 'mysql://localhost/x' }, 'DATABASE_URL'],
    [{ NODE_ENV: 'production' }, 'AUTH_JWKS_URL'],
  ])('[SPEC §7] bad settings %j stop start-up with one clear line naming %s', async (env, name) => {
    const p = runScript('src/main.ts', { DATABASE_URL: `sqlite:${tempDir()}/x.db`, PORT: '0', ...env });
    const { code } = await p.exited;
    expect(code).toBe(1);
    const lines = p.stderr.join('').trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(name);
  });

  it('[SPEC §2] starts in dev auth mode with a warning; SIGTERM closes sockets with 1001, commits, exits 0; no token in any log', async () => {
    const dir = tempDir();
    const p = runScript('src/main.ts', {
      DATABASE_URL: `sqlite:${dir}/chat.db`,
      PORT: '0',
      LOG_LEVEL: 'debug',
    });
    const url = await p.url;
    const minted = await fetch(`${url}/live-chat/dev/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'grace' }),
    }).then((r) => r.json() as Promise<any>);
    const token: string = minted.token;
    const status = await fetch(`${url}/live-chat/status`, {
      headers: { authorization: `Bearer ${token}` },
    }).then((r) => r.json() as Promise<any>);
    const sessionId = status.session.id;
    const client = await TestClient.connect(
      `${url.replace('http', 'ws')}/live-chat/ws/${sessionId}?token=${token}`,
    );
    // A refused handshake and a bad request log their lines too; the token must be in none of them.
    const refused = await TestClient.connect(
      `${url.replace('http', 'ws')}/live-chat/ws/999?token=${token}x`,
      {
        waitForInit: false,
      },
    );
    expect((await refused.closed).code).toBe(4401);
    await fetch(`${url}/live-chat/nope?token=${token}`);
    client.send({ type: 'message', message: 'last words', client_msg_id: 'lw-1' });
    await client.next('new_message');

    p.child.kill('SIGTERM');
    expect((await client.closed).code).toBe(1001);
    expect((await p.exited).code).toBe(0);

    const store = createChatStore(`sqlite:${dir}/chat.db`);
    try {
      const page = await store.listMessages(sessionId, { limit: 10 });
      expect(page.messages.map((m) => m.message)).toEqual(['last words']);
    } finally {
      await store.close();
    }
    const out = p.stdout.join('');
    expect(out).toContain('dev auth mode');
    expect(out).toContain('websocket open');
    expect(out).toContain('websocket close');
    expect(out).toContain('websocket refused');
    expect(out).not.toContain(token);
    expect(out).not.toContain(token.split('.')[2]!);
    expect(p.stderr.join('')).not.toContain(token.split('.')[2]!);
  });

  it('[SPEC §8] npm run migrate applies the migrations and is idempotent', async () => {
    const dir = tempDir();
    for (let i = 0; i < 2; i++) {
      const p = runScript('src/cli/migrate.ts', { DATABASE_URL: `sqlite:${dir}/m.db` });
      expect((await p.exited).code).toBe(0);
      expect(p.stdout.join('')).toMatch(/migrations: /);
    }
  });

  it('[SPEC §7] npm run migrate that cannot open the database (no path, not a database, newer migrations) says why in one line', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'not-a-db.db'), 'this is text, not SQLite\n'.repeat(100));
    const newer = join(dir, 'newer.db');
    const migrated = runScript('src/cli/migrate.ts', { DATABASE_URL: `sqlite:${newer}` });
    expect((await migrated.exited).code).toBe(0);
    const sqlite = new Database(newer);
    sqlite
      .prepare("INSERT INTO kysely_migration (name, timestamp) VALUES ('9999_from_the_future', '2100-01-01')")
      .run();
    sqlite.close();
    for (const [url, why] of [
      ['sqlite://', /needs a file path/],
      [`sqlite:${join(dir, 'not-a-db.db')}`, /not a database/],
      [`sqlite:${newer}`, /migrated by a newer draw-chat \(migration 9999_from_the_future/],
    ] as const) {
      const p = runScript('src/cli/migrate.ts', { DATABASE_URL: url });
      expect((await p.exited).code, url).toBe(1);
      const err = p.stderr.join('');
      expect(err, url).toMatch(/^migrations failed: /);
      expect(err, url).toMatch(why);
      expect(err.trimEnd().split('\n'), url).toHaveLength(1);
    }
  });
});
