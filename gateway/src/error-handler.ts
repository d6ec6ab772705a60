// Maps every failure to OpenAI's error shape: our ApiErrors as they are, schema validation to 400,
// Fastify's and @fastify/multipart's own errors (bad JSON, body too large, ...) by their status code.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { ApiError, type ErrorType } from './errors.js';

function typeForStatus(status: number): ErrorType {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 429) return 'rate_limit_error';
  if (status === 503) return 'service_unavailable';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (hasZodFastifySchemaValidationErrors(err)) {
    const issue = err.validation[0]!;
    const path = issue.instancePath.replace(/^\//, '').replaceAll('/', '.');
    const where = err.validationContext === 'body' ? '' : `${err.validationContext} `;
    if (issue.keyword === 'unrecognized_keys') {
      // OpenAI's answer to a field it does not know, naming the field.
      const key = String((issue.params as { keys?: string[] }).keys?.[0] ?? '');
      const param = path ? `${path}.${key}` : key;
      return new ApiError(400, 'invalid_request_error', `Unrecognized request argument supplied: ${param}`, 'unknown_parameter', param);
    }
    return new ApiError(400, 'invalid_request_error', `invalid ${where}${path ? `'${path}'` : 'body'}: ${issue.message}`, 'invalid_value', path || null);
  }
  const fastifyError = err as Partial<FastifyError>;
  const status = typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 ? fastifyError.statusCode : 500;
  if (status === 500) return new ApiError(500, 'server_error', 'internal error', 'internal_error');
  // 406/415 from content-type problems are request errors to the client: report them as 400 unless 413.
  const mapped = status === 413 ? 413 : status === 406 || status === 415 ? 400 : status;
  if (fastifyError.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || fastifyError.name === 'SyntaxError') {
    return new ApiError(400, 'invalid_request_error', `malformed JSON body: ${fastifyError.message}`, 'invalid_json');
  }
  return new ApiError(mapped, typeForStatus(mapped), fastifyError.message ?? 'bad request', fastifyError.code?.toLowerCase() ?? null);
}

/**
 * Errors Fastify meets while routing, before any handler or hook (a malformed URL, a path parameter over
 * its maximum length): in OpenAI's shape too, as a 400, since nothing that long or malformed names anything.
 */
export function routingError(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const message = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a path parameter is too long' : 'malformed URL';
  void reply.code(400).send(new ApiError(400, 'invalid_request_error', message, 'invalid_url').toBody());
}

export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const apiError = toApiError(err);
    if (apiError.status >= 500 && apiError.status !== 503) request.log.error({ err }, 'request failed');
    else request.log.debug({ err: apiError.message, status: apiError.status }, 'request refused');
    return reply.code(apiError.status).headers(apiError.headers).send(apiError.toBody());
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send(new ApiError(404, 'invalid_request_error', `no route ${request.method} ${request.url.split('?')[0]}`, 'not_found').toBody()),
  );
}
