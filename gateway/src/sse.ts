// Server-sent events in OpenAI's streaming format: `data: <json>` per chunk, `data: [DONE]` at the end,
// and on failure `event: error` with an OpenAI error object, after which the stream closes.
import type { ServerResponse } from 'node:http';
import type { OpenAIErrorBody } from './errors.js';

export class SseStream {
  constructor(private readonly raw: ServerResponse) {}

  open(headers: Record<string, string> = {}): void {
    this.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      ...headers,
    });
    this.raw.flushHeaders();
  }

  /** True once the client has gone or the stream was ended. */
  get closed(): boolean {
    return this.raw.writableEnded || this.raw.destroyed;
  }

  send(data: unknown): void {
    if (!this.closed) this.raw.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  fail(body: OpenAIErrorBody): void {
    if (this.closed) return;
    this.raw.write(`event: error\ndata: ${JSON.stringify(body)}\n\n`);
    this.raw.end();
  }

  done(): void {
    if (this.closed) return;
    this.raw.write('data: [DONE]\n\n');
    this.raw.end();
  }
}
