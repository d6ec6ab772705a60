// Every error leaves the gateway in OpenAI's shape, so OpenAI clients surface the message and status as-is.

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'rate_limit_error'
  | 'service_unavailable'
  | 'server_error';

export interface OpenAIErrorBody {
  error: { message: string; type: ErrorType; param: string | null; code: string | null };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: ErrorType,
    message: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    /** Extra response headers, e.g. retry-after on 429. */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new ApiError(400, 'invalid_request_error', message, code, param);

export const notFound = (message: string, code = 'not_found', param: string | null = null) =>
  new ApiError(404, 'invalid_request_error', message, code, param);

export const modelNotFound = (model: string) =>
  new ApiError(404, 'invalid_request_error', `unknown model '${model}'`, 'model_not_found', 'model');

export const tooLarge = (message: string) => new ApiError(413, 'invalid_request_error', message, 'too_large');

export const unauthorized = (message: string) => new ApiError(401, 'authentication_error', message, 'invalid_api_key');

export const forbidden = (message: string) => new ApiError(403, 'permission_error', message, 'forbidden');

/** Retryable: no healthy worker, or the worker died while serving the request. */
export const unavailable = (message: string) =>
  new ApiError(503, 'service_unavailable', message, 'worker_unavailable', null, { 'retry-after': '1' });

export const conflict = (message: string) => new ApiError(409, 'invalid_request_error', message, 'conflict');
