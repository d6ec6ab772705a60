import { defineConfig } from 'vite';

// The gateway serves dist/ at /dashboard/, so every asset URL must carry that prefix.
const BASE_PATH = '/dashboard/';

// `npm run dev` forwards the API to a running gateway; set PARA_GATEWAY_URL when it is
// not on the default address.
const gatewayUrl = process.env.PARA_GATEWAY_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  base: BASE_PATH,
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: true,
  },
  server: {
    proxy: {
      '/admin': gatewayUrl,
    },
  },
});
