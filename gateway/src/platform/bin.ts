#!/usr/bin/env node
// `para serve|chat|bench|admin`: the platform's launcher and tools (commands in this folder). It uses the gateway
// only through the package's public surface (../index.js), as any other program embedding the gateway would.
import { main } from './main.js';

main(process.argv.slice(2)).then(
  // Exit explicitly: open gRPC channels or keep-alive sockets must not hold a finished command open.
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`para: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
