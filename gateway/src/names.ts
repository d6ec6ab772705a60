// The one name grammar, shared with the engine workers (proto/engine.proto documents what they accept).
// A segment names a tenant or an adapter; what a worker receives as an adapter id is SEGMENT or
// SEGMENT/SEGMENT, then @VERSION. The dot is not part of it: engines refuse '.' in adapter names, so a name
// with one would upload and then fail at every use.

const SEGMENT = '[a-z0-9][a-z0-9_-]{0,63}';

/** A tenant or adapter name, for everything created from now on. */
export const NAME_PATTERN = new RegExp(`^${SEGMENT}$`);

/** Said in 400s wherever a name is refused. */
export const NAME_RULE = 'names are 1 to 64 of a-z, 0-9, _ and -, starting with a letter or digit';

/**
 * Names made before the dot was dropped (`acme.corp`): still accepted where an existing tenant or adapter is
 * looked up to be listed or deleted, never for anything new, and never sent to a worker.
 */
export const LEGACY_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** A `model` field: `copa`, `acme/support`, `acme/support@2` (version 1 to 9 digits, no leading zero). */
export const MODEL_PATTERN = new RegExp(`^(?:(${SEGMENT})/)?(${SEGMENT})(?:@([1-9][0-9]{0,8}))?$`);

/** What engine workers accept as an adapter id (the bare backbone is '' or `__base__`). */
export const WORKER_ADAPTER_PATTERN = new RegExp(`^${SEGMENT}(?:/${SEGMENT})?(?:@[0-9]{1,9})?$`);
