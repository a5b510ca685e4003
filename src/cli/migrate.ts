// `npm run migrate`: applies pending migrations to DATABASE_URL and prints one line.
import 'dotenv/config';
import { loadSettings, SettingsError } from '../config/settings.js';
import { openDatabase } from '../store/database.js';
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
  const { db, dialect } = openDatabase(databaseUrl);
  try {
    const { applied, total } = await migrateToLatest(db, dialect);
    process.stdout.write(`migrations: up to date (${applied.length} applied, ${total} total; ${dialect})\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`migrations failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    await db.destroy();
  }
}

process.exitCode = await main();
