// The built dashboard against a real gateway and engine worker (tiny model) in headless Chromium: sign in
// with the operator key, send real requests through the gateway, and watch the tenants' counts go up.
import { existsSync, mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type EngineWorker, startWorker } from './helpers/engine.js';
import { OPERATOR_KEY, type TestGateway, postJson, startTestGateway, tenantWithKey } from './helpers/gateway.js';
import { REPO_ROOT } from './helpers/paths.js';

const DASHBOARD = join(REPO_ROOT, 'dashboard');

// The dashboard's own browser launcher (Debian's Chromium, closed-network flags), loaded by path: its
// playwright-core belongs to the dashboard package, so the few calls used here are typed locally and the
// page-side code is passed as strings (this package's TypeScript has no DOM types).
interface Page {
  goto(url: string): Promise<unknown>;
  fill(selector: string, value: string): Promise<void>;
  click(selector: string): Promise<void>;
  locator(selector: string): { waitFor(options: { state: 'visible' }): Promise<void> };
  waitForFunction(expression: string, arg?: undefined, options?: { timeout: number }): Promise<unknown>;
  evaluate<T>(expression: string): Promise<T>;
  textContent(selector: string): Promise<string | null>;
  screenshot(options: { path: string; fullPage: boolean }): Promise<unknown>;
}
interface LaunchedBrowser {
  newPage(): Promise<Page>;
  close(): Promise<void>;
}
const { browserSkipReason, launchBrowser } = (await import(join(DASHBOARD, 'test', 'browser.ts'))) as {
  browserSkipReason(): string | undefined;
  launchBrowser(): Promise<LaunchedBrowser>;
};

/** Rows of a table as cell texts, evaluated in the page. */
const rowsOf = (id: string) =>
  `[...document.querySelectorAll('#${id} tbody tr')].map((r) => [...r.querySelectorAll('td')].map((c) => c.textContent ?? ''))`;
const SCREENSHOT = join(REPO_ROOT, 'gateway', 'test-artifacts', 'dashboard-live.png');
const skipReason = browserSkipReason();
if (skipReason !== undefined) console.warn(`Skipping the live dashboard test: ${skipReason}`);

describe.skipIf(skipReason !== undefined)('dashboard on a live gateway', () => {
  let worker: EngineWorker;
  let gw: TestGateway;
  let browser: LaunchedBrowser;
  let page: Page;
  const keys: Record<string, string> = {};

  beforeAll(async () => {
    if (!existsSync(join(DASHBOARD, 'dist', 'index.html'))) {
      const built = spawnSync('npm', ['run', 'build'], { cwd: DASHBOARD, encoding: 'utf8' });
      if (built.status !== 0) throw new Error(`building the dashboard failed:\n${built.stdout}\n${built.stderr}`);
    }
    worker = await startWorker({ model: join(inject('tinyDir'), 'model'), slots: 8, maxLen: 256 });
    gw = await startTestGateway([worker.address], { sharedAdapters: [{ name: 'alpha', dir: join(inject('tinyDir'), 'adapters/alpha') }] });
    for (const name of ['acme', 'globex']) keys[name] = await tenantWithKey(gw.admin, name);
    browser = await launchBrowser();
    page = await browser.newPage();
  });

  afterAll(async () => {
    await browser?.close();
    await gw?.close();
    await worker?.stop();
  });

  const send = (tenant: string, count: number) =>
    Promise.all(
      Array.from({ length: count }, async () => {
        const r = await postJson(gw.url, '/v1/chat/completions', keys[tenant], { model: 'alpha', messages: [{ role: 'user', content: 'the cat' }], max_tokens: 6 });
        expect(r.status).toBe(200);
      }),
    );

  /** The tenants table as {name: requests}, once it shows `expected`. */
  const waitForRequests = async (expected: Record<string, number>) => {
    const want = JSON.stringify(Object.entries(expected).map(([name, n]) => [name, String(n)]));
    await page.waitForFunction(
      `(() => { const rows = ${rowsOf('tenants-table')}; return ${want}.every(([name, n]) => rows.some((r) => r[0] === name && r[2] === n)); })()`,
      undefined,
      { timeout: 10_000 },
    );
  };

  it('shows the tenants and their request counts as real traffic arrives', async () => {
    await page.goto(`${gw.url}/dashboard/`);
    await page.fill('#key-input', OPERATOR_KEY);
    await page.click('#login-form button[type="submit"]');
    await page.locator('#dashboard').waitFor({ state: 'visible' });
    await waitForRequests({ acme: 0, globex: 0 });
    expect(await page.textContent('#backbone')).toBe('tiny');

    await Promise.all([send('acme', 3), send('globex', 2)]);
    await waitForRequests({ acme: 3, globex: 2 });
    await send('acme', 4);
    await waitForRequests({ acme: 7, globex: 2 });

    // The workers table shows the real worker; the adapters table counts the shared adapter's requests.
    const workerRows = await page.evaluate<string[][]>(rowsOf('workers-table'));
    expect(workerRows.map((r) => r[0])).toEqual([worker.address]);
    const adapterRows = await page.evaluate<string[][]>(rowsOf('adapters-table'));
    expect(adapterRows.find((r) => r[0] === 'alpha')?.[3]).toBe('9');

    mkdirSync(join(REPO_ROOT, 'gateway', 'test-artifacts'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });
});
