// The platform command line: `para serve|chat|bench|admin` (the `para` Python entry point runs this file's
// program with PARA_PYTHON and PARA_ROOT set). Each command parses its own arguments and has its own --help.
import { adminCommand } from './admin.js';
import { CliError, type Command, UsageError, messageOf } from './args.js';
import { benchCommand } from './bench.js';
import { chatCommand } from './chat.js';
import { serveCommand } from './serve.js';

const COMMANDS: Command[] = [serveCommand, chatCommand, benchCommand, adminCommand];

const usage = `Usage: para <command> [options]

The PARA serving platform: engine workers, the OpenAI-compatible gateway, and tools around it.

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(8)}${c.summary}`).join('\n')}

\`para <command> --help\` shows a command's options.
`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    process.stderr.write(`para: unknown command '${name}'\n\n${usage}`);
    return 2;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`para ${name}: ${err.message}\n(see para ${name} --help)\n`);
      return 2;
    }
    process.stderr.write(`para ${name}: error: ${messageOf(err)}\n`);
    // Unexpected failures keep their stack for bug reports; expected ones (CliError) are just the message.
    if (!(err instanceof CliError) && err instanceof Error && process.env.PARA_DEBUG) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}
