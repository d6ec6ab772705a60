// Every string in a JSON body must be well-formed Unicode. A lone UTF-16 surrogate ("\ud800" in JSON) is
// legal JSON and a legal JS string, but it has no UTF-8 form: a worker cannot even deserialize the request
// (gRPC INTERNAL before any handler runs), so it is refused here with a 400 naming the field.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { badRequest } from './errors.js';

/** The path (`messages.0.content`) of the first string, or object key, that is not well-formed; null if none. */
export function illFormedPath(value: unknown, path: string[] = []): string | null {
  if (typeof value === 'string') return value.isWellFormed() ? null : path.join('.') || 'body';
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = illFormedPath(value[i], [...path, String(i)]);
      if (found !== null) return found;
    }
    return null;
  }
  if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      if (!key.isWellFormed()) return [...path, '(a key)'].join('.');
      const found = illFormedPath(item, [...path, key]);
      if (found !== null) return found;
    }
  }
  return null;
}

async function checkBody(request: FastifyRequest): Promise<void> {
  const path = illFormedPath(request.body);
  if (path !== null) {
    throw badRequest(`'${path}' is not well-formed Unicode: it holds a lone UTF-16 surrogate`, path === 'body' ? null : path, 'invalid_string');
  }
}

/** Runs after the body is parsed and before the route's schema sees it, for every route. */
export function requireWellFormedStrings(app: FastifyInstance): void {
  app.addHook('preValidation', checkBody);
}
