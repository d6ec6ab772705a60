// Shared argument handling for the platform commands: node:util parseArgs for the syntax, zod for the values,
// and the two kinds of failure a command can end with (a usage mistake, or a problem while running).
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { z } from 'zod';

/** A mistake on the command line: printed with a pointer to --help, exit status 2. */
export class UsageError extends Error {}

/** A problem met while running (port busy, worker failed, gateway unreachable): printed as is, exit status 1. */
export class CliError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

export interface Command {
  name: string;
  summary: string;
  usage: string;
  /** Resolves to the exit status. */
  run(argv: string[]): Promise<number>;
}

export type Parsed<T> = { values: T; positionals: string[] };

/**
 * Parses argv with `options` (a `help` flag is added) and validates the values with `schema`, whose keys are
 * the flag names as typed (`max-tokens`), so zod's messages can name the flag. With `--help` it prints
 * `usage` and returns null: the command then ends with status 0.
 */
export function parseCommand<S extends z.ZodType>(
  argv: string[],
  options: Options,
  schema: S,
  usage: string,
  { positionals = false }: { positionals?: boolean } = {},
): Parsed<z.output<S>> | null {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, strict: true, allowPositionals: positionals, options: { ...options, help: { type: 'boolean', short: 'h' } } });
  } catch (err) {
    // parseArgs' messages already name the option ("Unknown option '--foo'"); keep them, drop its error code.
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const { help, ...values } = parsed.values as Record<string, unknown>;
  if (help) {
    process.stdout.write(usage);
    return null;
  }
  const result = schema.safeParse(values);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const flag = issue.path.length > 0 ? `--${String(issue.path[0])}` : 'options';
    throw new UsageError(`${flag}: ${issue.message}`);
  }
  return { values: result.data, positionals: parsed.positionals };
}

/** A whole-number flag given as text, with bounds; `fallback` when absent. */
export const intFlag = (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .regex(/^\d+$/, 'expected a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max))
    .optional()
    .transform((n) => n ?? fallback);

/** A whole-number flag that may be left out (undefined). */
export const optionalIntFlag = (min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.string().regex(/^\d+$/, 'expected a whole number').transform(Number).pipe(z.number().int().min(min).max(max)).optional();

/** A base URL: http(s), no trailing slash. */
export const urlFlag = (fallback: string) =>
  z
    .string()
    .optional()
    .transform((u) => (u ?? fallback).replace(/\/+$/, ''))
    .pipe(z.string().regex(/^https?:\/\/[^/\s]+(\/\S*)?$/, 'expected a URL such as http://127.0.0.1:8080'));

export const DEFAULT_URL = 'http://127.0.0.1:8080';

/** The operator key from --key or PARA_OPERATOR_KEY; neither is a CliError saying where to find one. */
export function operatorKey(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const key = flag ?? env.PARA_OPERATOR_KEY;
  if (!key) throw new CliError('no operator key: pass --key KEY or set PARA_OPERATOR_KEY (para serve prints it)');
  return key;
}

/** The text of an error, for messages. */
export const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** fetch's own "fetch failed" says nothing useful: name the gateway and the likely fix. */
export function explainFetchError(err: unknown, url: string): unknown {
  if (err instanceof TypeError && err.message === 'fetch failed') {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    return new CliError(`cannot reach the gateway at ${url}${cause ? ` (${cause})` : ''}; is para serve running? (--url sets the address)`);
  }
  return err;
}
