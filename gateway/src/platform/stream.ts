// One streamed chat completion over fetch, read chunk by chunk: the text as it arrives, the time to the first
// token and the usage. `chat` prints with it and `bench` times with it; plain fetch keeps the timing free of
// any client library's own buffering or retries.
import { CliError } from './args.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface StreamRequest {
  url: string;
  key: string;
  model: string;
  messages: ChatMessage[];
  maxTokens?: number;
  temperature?: number;
  signal?: AbortSignal;
  /** Called with each piece of new text. */
  onText?: (text: string) => void;
}

export interface StreamResult {
  text: string;
  /** Milliseconds from sending the request to the first content, or null if none came. */
  ttftMs: number | null;
  totalMs: number;
  promptTokens: number;
  completionTokens: number;
  finishReason: string | null;
}

/** An HTTP or stream error from the gateway, with its OpenAI error message. */
export class GatewayError extends CliError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface ChunkJson {
  choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: { prompt_tokens: number; completion_tokens: number } | null;
  error?: { message?: string };
}

async function errorOf(response: Response): Promise<GatewayError> {
  const text = await response.text();
  let message = text.slice(0, 300) || response.statusText;
  try {
    message = (JSON.parse(text) as ChunkJson).error?.message ?? message;
  } catch {
    // not JSON: keep the text
  }
  return new GatewayError(response.status, `gateway answered ${response.status}: ${message}`);
}

export async function streamChat(request: StreamRequest): Promise<StreamResult> {
  const started = performance.now();
  const response = await fetch(`${request.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${request.key}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: request.model,
      messages: request.messages,
      max_tokens: request.maxTokens,
      temperature: request.temperature,
      stream: true,
      stream_options: { include_usage: true },
    }),
    signal: request.signal,
  });
  if (!response.ok || !response.body) throw await errorOf(response);

  const result: StreamResult = { text: '', ttftMs: null, totalMs: 0, promptTokens: 0, completionTokens: 0, finishReason: null };
  const decoder = new TextDecoder();
  let buffer = '';
  let done = false;
  const handleEvent = (block: string) => {
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
    }
    const payload = data.join('\n');
    if (payload === '[DONE]') {
      done = true;
      return;
    }
    if (!payload) return;
    const chunk = JSON.parse(payload) as ChunkJson;
    // A failure after the first token arrives as an `error` event (the HTTP status was already sent).
    if (event === 'error' || chunk.error) throw new GatewayError(503, `stream failed: ${chunk.error?.message ?? payload}`);
    for (const choice of chunk.choices ?? []) {
      const text = choice.delta?.content;
      if (text) {
        result.ttftMs ??= performance.now() - started;
        result.text += text;
        request.onText?.(text);
      }
      if (choice.finish_reason) result.finishReason = choice.finish_reason;
    }
    if (chunk.usage) {
      result.promptTokens = chunk.usage.prompt_tokens;
      result.completionTokens = chunk.usage.completion_tokens;
    }
  };
  for await (const bytes of response.body) {
    buffer += decoder.decode(bytes as Uint8Array, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      handleEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
  }
  if (buffer.trim()) handleEvent(buffer);
  if (!done) throw new GatewayError(502, 'the stream ended without [DONE]');
  result.totalMs = performance.now() - started;
  return result;
}
