import { type Kysely, type Migration, type MigrationProvider, Migrator } from 'kysely';
import { errorLine } from '../errors.js';
import type { Dialect } from '../schema.js';
import { initialMigration } from './0001_initial.js';

/**
 * Every migration, in order, keyed by a name that sorts in that order. A static list (not a folder scan) so
 * it runs the same from `src/` (tsx) and from compiled `dist/`.
 */
export function migrationProvider(dialect: Dialect): MigrationProvider {
  const migrations: Record<string, Migration> = {
    '0001_initial': initialMigration(dialect),
  };
  return { getMigrations: async () => migrations };
}

export interface MigrationOutcome {
  /** Names of the migrations this run applied. */
  applied: string[];
  /** How many migrations the database has after this run. */
  total: number;
}

/** Applies every pending migration. Throws an Error naming the failed migration when one fails. */
export async function migrateToLatest<DB>(db: Kysely<DB>, dialect: Dialect): Promise<MigrationOutcome> {
  const migrator = new Migrator({ db, provider: migrationProvider(dialect) });
  const { error, results } = await migrator.migrateToLatest();
  if (error !== undefined) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    let reason = errorLine(error);
    // Kysely's words for a database whose history holds a migration this build does not know.
    const unknown = /previously executed migration (\S+) is missing/.exec(reason);
    if (unknown)
      reason = `the database was migrated by a newer draw-chat (migration ${unknown[1]} is not in this build); run that version or a newer one`;
    throw new Error(
      failed ? `migration ${failed} failed: ${reason}` : `migrations could not run: ${reason}`,
      { cause: error },
    );
  }
  const applied = (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
  const total = (await migrator.getMigrations()).filter((m) => m.executedAt !== undefined).length;
  return { applied, total };
}
