// `para chat`: talk to an adapter through a running gateway, the answer streamed as it is generated.
// --message sends one turn and prints the answer (for scripts); otherwise an interactive loop keeps the
// conversation's history.
import { createInterface } from 'node:readline/promises';
import { z } from 'zod';
import { CliError, type Command, DEFAULT_URL, explainFetchError, intFlag, parseCommand, urlFlag } from './args.js';
import { type ChatMessage, streamChat } from './stream.js';

const usage = `Usage: para chat --model ADAPTER [options]

Chat with an adapter through a running gateway (para serve), the answer streamed as it is generated.

Options:
  --model ADAPTER      the adapter: copa, acme/support, acme/support@2, or base for the bare backbone
  --url URL            the gateway (default ${DEFAULT_URL})
  --key KEY            a tenant key (default: env PARA_API_KEY); para serve prints acme's and globex's
  --message TEXT       send one message, print the answer and exit (no interactive session)
  --system TEXT        a system message before the conversation
  --max-tokens N       tokens per answer (default 256)
  --temperature T      sampling temperature (default 0: greedy, the same answer every time)
  -h, --help           show this help

In the interactive session an empty line is ignored, /reset starts the conversation over and /exit
(or Ctrl-D) leaves.
`;

const options = {
  model: { type: 'string' },
  url: { type: 'string' },
  key: { type: 'string' },
  message: { type: 'string' },
  system: { type: 'string' },
  'max-tokens': { type: 'string' },
  temperature: { type: 'string' },
} as const;

const schema = z.object({
  model: z.string({ error: 'required: the adapter to chat with (e.g. --model copa)' }).min(1),
  url: urlFlag(DEFAULT_URL),
  key: z.string().min(1).optional(),
  message: z.string().optional(),
  system: z.string().optional(),
  'max-tokens': intFlag(256, 1),
  temperature: z
    .string()
    .optional()
    .transform((t) => (t === undefined ? 0 : Number(t)))
    .pipe(z.number({ error: 'expected a number' }).min(0).max(2)),
});
type ChatOptions = z.output<typeof schema>;

async function oneTurn(opts: ChatOptions, key: string, messages: ChatMessage[]): Promise<string> {
  const result = await streamChat({
    url: opts.url, key, model: opts.model, messages, maxTokens: opts['max-tokens'], temperature: opts.temperature,
    onText: (text) => process.stdout.write(text),
  });
  process.stdout.write('\n');
  return result.text;
}

async function interactive(opts: ChatOptions, key: string): Promise<void> {
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
  const start: ChatMessage[] = opts.system ? [{ role: 'system', content: opts.system }] : [];
  let history = [...start];
  process.stdout.write(`Chatting with ${opts.model} at ${opts.url}; /reset starts over, /exit or Ctrl-D leaves.\n`);
  try {
    for (;;) {
      let line: string;
      try {
        line = (await rl.question('> ')).trim();
      } catch {
        return; // Ctrl-D or Ctrl-C closes the input
      }
      if (!line) continue;
      if (line === '/exit' || line === '/quit') return;
      if (line === '/reset') {
        history = [...start];
        process.stdout.write('(conversation reset)\n');
        continue;
      }
      history.push({ role: 'user', content: line });
      try {
        history.push({ role: 'assistant', content: await oneTurn(opts, key, history) });
      } catch (err) {
        history.pop(); // the turn failed; leave it out of the conversation
        process.stderr.write(`\n${err instanceof Error ? err.message : String(err)}\n`);
      }
    }
  } finally {
    rl.close();
  }
}

export const chatCommand: Command = {
  name: 'chat',
  summary: 'chat with an adapter through a running gateway (streamed)',
  usage,
  async run(argv) {
    const parsed = parseCommand(argv, options, schema, usage);
    if (!parsed) return 0; // --help: the usage is printed
    const opts = parsed.values;
    const key = opts.key ?? process.env.PARA_API_KEY;
    if (!key) throw new CliError('no key: pass --key KEY or set PARA_API_KEY (para serve prints the demo tenants\' keys)');
    try {
      if (opts.message !== undefined) {
        const messages: ChatMessage[] = [...(opts.system ? [{ role: 'system' as const, content: opts.system }] : []), { role: 'user', content: opts.message }];
        await oneTurn(opts, key, messages);
      } else await interactive(opts, key);
    } catch (err) {
      throw explainFetchError(err, opts.url);
    }
    return 0;
  },
};
