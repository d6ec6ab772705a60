// What `para serve` prints once everything is up: where it listens, the keys, and examples to paste.
import { sampleQuestion } from './samples.js';
import type { DemoTenant, OperatorKey } from './state.js';

export interface ReadyInfo {
  url: string;
  model: string;
  workers: string[];
  adapters: string[];
  tenants: DemoTenant[];
  operator: OperatorKey;
  dataDir: string;
  dashboard: boolean;
}

/** A gateway bound to every address (0.0.0.0, ::) is reached locally through the loopback address. */
export function clientUrl(url: string): string {
  return url.replace('//0.0.0.0:', '//127.0.0.1:').replace('//[::]:', '//[::1]:');
}

const indent = (text: string) => text.replace(/^/gm, '    ');

export function readyText(info: ReadyInfo): string {
  const url = clientUrl(info.url);
  const tenant = info.tenants[0]!;
  // The example calls the first shared adapter (copa for the embedded model), or the bare backbone.
  const model = info.adapters[0] ?? 'base';
  const question = sampleQuestion(model);
  const body = JSON.stringify({ model, messages: [{ role: 'user', content: question }], max_tokens: 24 });
  const keySource = { flag: '--operator-key', env: 'PARA_OPERATOR_KEY', file: `${info.dataDir}/operator-key`, generated: `new, saved to ${info.dataDir}/operator-key` }[info.operator.source];

  const curl = `curl -s ${url}/v1/chat/completions \\\n  -H "Authorization: Bearer ${tenant.key}" \\\n  -H "Content-Type: application/json" \\\n  -d '${body}'`;
  const python = [
    'from openai import OpenAI',
    `client = OpenAI(base_url="${url}/v1", api_key="${tenant.key}")`,
    `reply = client.chat.completions.create(model="${model}", max_tokens=24,`,
    `    messages=[{"role": "user", "content": ${JSON.stringify(question)}}])`,
    'print(reply.choices[0].message.content)',
  ].join('\n');
  const node = [
    "import OpenAI from 'openai';",
    `const client = new OpenAI({ baseURL: '${url}/v1', apiKey: '${tenant.key}' });`,
    `const reply = await client.chat.completions.create({ model: '${model}', max_tokens: 24,`,
    `  messages: [{ role: 'user', content: ${JSON.stringify(question)} }] });`,
    'console.log(reply.choices[0].message.content);',
  ].join('\n');

  const width = Math.max(...info.tenants.map((t) => t.name.length));
  return [
    '',
    `PARA gateway ready at ${url}`,
    `  backbone        ${info.model} on ${info.workers.length} engine worker${info.workers.length === 1 ? '' : 's'} (${info.workers.join(', ')})`,
    `  shared adapters ${info.adapters.length > 0 ? info.adapters.join(', ') : 'none (model "base" is the bare backbone)'}`,
    `  tenant keys     ${info.tenants.map((t) => `${t.name.padEnd(width)}  ${t.key}${t.created ? '  (new)' : ''}`).join('\n                  ')}`,
    `  operator key    ${info.operator.key}  (${keySource})`,
    info.dashboard ? `  dashboard       ${url}/dashboard/  (sign in with the operator key)` : '  dashboard       not built (npm run build in dashboard/)',
    '',
    'curl:',
    indent(curl),
    '',
    'Python (pip install openai):',
    indent(python),
    '',
    'Node (npm install openai):',
    indent(node),
    '',
    `Chat: para chat --model ${model} --url ${url} --key ${tenant.key}`,
    'Stop: Ctrl-C',
    '',
  ].join('\n');
}
