#!/usr/bin/env node
// `para-gateway`: start the gateway from the command line; SIGINT/SIGTERM close it cleanly.
import { startGateway } from './app.js';
import { USAGE, parseCli } from './argv.js';

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseCli(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    process.exit(2);
  }
  if (parsed.help) {
    process.stdout.write(USAGE);
    return;
  }
  const gateway = await startGateway(parsed.options);
  gateway.logger.info({ url: gateway.url, workers: gateway.pool.workers.length }, 'gateway listening');
  const stop = () => {
    gateway.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`para-gateway: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
