// `para serve --demo`: two tenants, two adapters, one backbone. acme asks copa questions and globex boolq
// questions, all at once through the gateway with the official openai client; then the engine's own Stats
// show the decoding step that mixed the most adapters, which is the point: one batch, both tenants.
import OpenAI from 'openai';
import { EngineClient, type StatsResponse, loadEngineService } from '../index.js';
import { BOOLQ_QUESTIONS, COPA_QUESTIONS } from './samples.js';
import type { DemoTenant } from './state.js';

export interface DemoOptions {
  url: string;
  tenants: DemoTenant[];
  workers: string[];
  protoPath: string;
}

/** Long enough that every request is still decoding when the last one joins the batch. */
const MAX_TOKENS = 28;

const oneLine = (text: string, width = 100) => {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > width ? `${flat.slice(0, width - 1)}…` : flat;
};

/** The question part of a task prompt, for printing: COPA's premise and options, BoolQ's question. */
const shortQuestion = (prompt: string) => {
  const premise = /Premise: (.*)\n/.exec(prompt)?.[1];
  if (premise) {
    const question = /Question: (.*)\n/.exec(prompt)?.[1] ?? '';
    const options = [...prompt.matchAll(/^- (.*)$/gm)].map((m) => m[1]).join(' / ');
    return `${premise} ${question} ${options}`;
  }
  return /Question: (.*)\n/.exec(prompt)?.[1] ?? prompt;
};

async function engineStats(workers: string[], protoPath: string): Promise<{ address: string; stats: StatsResponse }[]> {
  const Engine = loadEngineService(protoPath);
  return Promise.all(
    workers.map(async (address) => {
      const client = new EngineClient(address, Engine);
      try {
        return { address, stats: await client.stats(5000) };
      } finally {
        client.close();
      }
    }),
  );
}

/** Returns true when one decoding step mixed at least two adapters. */
export async function runDemo({ url, tenants, workers, protoPath }: DemoOptions): Promise<boolean> {
  const byName = new Map(tenants.map((t) => [t.name, t]));
  const plan = [
    { tenant: 'acme', model: 'copa', questions: COPA_QUESTIONS },
    { tenant: 'globex', model: 'boolq', questions: BOOLQ_QUESTIONS },
  ].map((p) => ({ ...p, client: new OpenAI({ baseURL: `${url}/v1`, apiKey: byName.get(p.tenant)!.key, maxRetries: 0 }) }));

  // A worker loads an adapter the first time a request needs it. One token per adapter first, so neither
  // tenant's requests start decoding while the other's adapter is still being loaded.
  await Promise.all(plan.map((p) => p.client.chat.completions.create({ model: p.model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 })));
  const before = await engineStats(workers, protoPath);

  const requests = plan.flatMap((p) => p.questions.map((sample) => ({ ...p, question: sample.prompt, expected: sample.expected })));
  process.stdout.write(`\nDemo: ${requests.length} requests at once, ${plan.map((p) => `${p.questions.length} from ${p.tenant} (adapter ${p.model})`).join(' and ')}\n\n`);
  const started = performance.now();
  const answers = await Promise.all(
    requests.map((r) =>
      r.client.chat.completions.create({ model: r.model, messages: [{ role: 'user', content: r.question }], max_tokens: MAX_TOKENS, temperature: 0 }),
    ),
  );
  const seconds = (performance.now() - started) / 1000;
  const correct = new Map<string, number>();
  requests.forEach((r, i) => {
    const answer = answers[i]!.choices[0]?.message.content ?? '';
    if (answer.trim().toLowerCase().replace(/\.$/, '') === r.expected.toLowerCase().replace(/\.$/, '')) correct.set(r.model, (correct.get(r.model) ?? 0) + 1);
    process.stdout.write(`[${r.tenant} → ${r.model}] ${oneLine(shortQuestion(r.question))} (expected: ${r.expected})\n    → ${oneLine(answer) || '(empty)'}\n`);
  });
  process.stdout.write(`\nMatching the expected answer: ${plan.map((p) => `${p.model} ${correct.get(p.model) ?? 0}/${p.questions.length}`).join(', ')}\n`);
  const tokens = answers.reduce((sum, a) => sum + (a.usage?.completion_tokens ?? 0), 0);
  process.stdout.write(`\n${requests.length} answers, ${tokens} tokens in ${seconds.toFixed(1)} s\n\nEngine stats (gRPC Stats of each worker):\n`);

  let bestAdapters = 0;
  for (const { address, stats } of await engineStats(workers, protoPath)) {
    const finished = stats.requests_finished - (before.find((b) => b.address === address)?.stats.requests_finished ?? 0);
    process.stdout.write(
      `  ${address}: ${finished} requests finished in the demo, peak_batch_rows=${stats.peak_batch_rows}, peak_batch_adapters=${stats.peak_batch_adapters}\n`,
    );
    bestAdapters = Math.max(bestAdapters, stats.peak_batch_adapters);
    if (stats.peak_batch_adapters >= 2) {
      process.stdout.write(`  → one decoding step held ${stats.peak_batch_rows} rows with ${stats.peak_batch_adapters} distinct adapters: both tenants were served in one batch\n`);
    }
  }
  if (bestAdapters < 2) {
    process.stdout.write('  → no decoding step mixed two adapters (with several workers the tenants may have been routed apart; try --workers 1)\n');
  }
  return bestAdapters >= 2;
}
