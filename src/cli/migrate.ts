// `npm run migrate`: applies pending migrations to DATABASE_URL and prints one line.
import 'dotenv/config';
import { loadSettings, SettingsError } from '../config/settings.js';
import { openDatabase } from '../store/database.js';
import { errorLine } from '../store/errors.js';
import { migrateToLatest } from '../store/migrations/index.js';

async function main(): Promise<number> {
  let databaseUrl: string;
  try {
    databaseUrl = loadSettings().databaseUrl;
  } catch (err) {
    if (err instanceof SettingsError) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    throw err;
  }
  let opened: ReturnType<typeof openDatabase> | undefined;
  try {
    // Opening can fail too (no path, not a database, no permission): one line, as for a failed migration.
    opened = openDatabase(databaseUrl);
    const { applied, total } = await migrateToLatest(opened.db, opened.dialect);
    process.stdout.write(
      `migrations: up to date (${applied.length} applied, ${total} total; ${opened.dialect})\n`,
    );
    return 0;
  } catch (err) {
    process.stderr.write(`migrations failed: ${errorLine(err)}\n`);
    return 1;
  } finally {
    await opened?.db.destroy();
  }
}

process.exitCode = await main();
