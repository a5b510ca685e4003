import 'dotenv/config';
import { loadSettings, SettingsError } from './config/settings.js';
import { createLogger, createServer } from './server.js';
import { errorLine } from './store/errors.js';

/** `npm start`: one draw-chat node. */
async function main(): Promise<void> {
  let settings: ReturnType<typeof loadSettings>;
  try {
    settings = loadSettings();
  } catch (err) {
    if (err instanceof SettingsError) {
      process.stderr.write(`draw-chat: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const logger = createLogger(settings);
  const server = await createServer(settings, { logger });
  const url = await server.listen();
  logger.info(
    { url, database: settings.databaseUrl.replace(/\/\/[^@/]*@/, '//***@') },
    `draw-chat listening on ${url}`,
  );

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      logger.error('shutdown took longer than 15 s; exiting');
      process.exit(1);
    }, 15_000);
    force.unref();
    server.close().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`draw-chat: failed to start: ${errorLine(err)}\n`);
  process.exit(1);
});
