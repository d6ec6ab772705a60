// The admin client, importable alone as `@para/gateway/sdk`.
export { ParaApiError, ParaClient, type AdapterUpload, type ParaClientOptions } from './client.js';
export type * from './types.js';
