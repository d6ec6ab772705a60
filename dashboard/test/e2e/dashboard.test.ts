import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserSkipReason, launchBrowser, type LaunchedBrowser } from '../browser';
import { startGatewayFixture, type GatewayFixture } from '../fixtures/gatewayFixture';
import { palette } from '../../src/view/palette';

const PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DIST_DIR = join(PACKAGE_DIR, 'dist');
const SCREENSHOT = join(PACKAGE_DIR, 'test-artifacts', 'dashboard.png');
const OPERATOR_KEY = 'op-test-key';
const TENANT_KEY = 'sk-para-tenant-key';
/** Two poll intervals plus slack: long enough for the next reply, short enough to fail fast. */
const NEXT_POLL_MS = 6_000;

const skipReason = browserSkipReason();
if (skipReason !== undefined) console.warn(`Skipping the dashboard browser test: ${skipReason}`);

/**
 * The built page in real Chromium against a fixture gateway. The steps share one page
 * and run in order, like an operator's visit: sign in, watch it update, lose the
 * gateway, get it back; then a wrong key and a tenant key in fresh tabs.
 */
describe.skipIf(skipReason !== undefined)('dashboard in Chromium', () => {
  let browser: LaunchedBrowser;
  let gateway: GatewayFixture;
  let page: Page;
  const pageErrors: string[] = [];
  /** Everything must come from the gateway: the page may not load fonts, scripts or styles from elsewhere. */
  const foreignRequests: string[] = [];

  beforeAll(async () => {
    if (!existsSync(join(DIST_DIR, 'index.html'))) {
      throw new Error(`${DIST_DIR}/index.html is missing: run \`npm run build\` first (npm test does it in pretest)`);
    }
    gateway = await startGatewayFixture({ distDir: DIST_DIR, operatorKey: OPERATOR_KEY, tenantKey: TENANT_KEY });
    browser = await launchBrowser({ viewport: { width: 1280, height: 900 } });
    page = await browser.newPage();
    page.on('pageerror', (error) => pageErrors.push(error.message));
    browser.context.on('request', (request) => {
      const url = request.url();
      if (!url.startsWith(`${gateway.url}/`) && !url.startsWith('data:') && url !== 'about:blank') foreignRequests.push(url);
    });
  });

  afterAll(async () => {
    await browser?.close();
    await gateway?.close();
  });

  it('asks for the key, then shows the first reply', async () => {
    await page.goto(`${gateway.url}/dashboard/`);
    await page.locator('#key-input').waitFor({ state: 'visible' });
    expect(await page.locator('#dashboard').isHidden()).toBe(true);
    expect(gateway.overviewsServed).toBe(0);

    await page.fill('#key-input', OPERATOR_KEY);
    await page.click('#login-form button[type="submit"]');
    await waitForTile(page, 'requests-rate', '4.0');

    expect(gateway.missingFiles).toEqual([]);
    expect(await page.evaluate(() => sessionStorage.getItem('para.operatorKey'))).toBe(OPERATOR_KEY);
    expect(await page.locator('#login').isHidden()).toBe(true);
    expect(await page.textContent('#backbone')).toBe('smollm2-135m');

    expect(await tileValues(page)).toEqual({
      'requests-rate': '4.0',
      'tokens-rate': '120',
      'latency-p50': '305 ms',
      'latency-p99': '870 ms',
      workers: '1 / 2',
    });
    expect(await page.getAttribute('[data-tile="workers"]', 'class')).toContain('tone-warning');

    expect(await tableRows(page, 'tenants-table')).toEqual([
      ['acme', '2', '41', '2,050', '900'],
      ['globex', '1', '7', '350', '140'],
    ]);
    expect(await tableRows(page, 'adapters-table')).toEqual([
      ['copa', 'shared', '1', '12', '25.0%', '300'],
      ['acme/billing', 'acme', '1', '0', '0.0%', '0'],
      ['acme/support', 'acme', '2', '29', '60.4%', '700'],
      ['globex/faq', 'globex', '1', '7', '14.6%', '140'],
    ]);
    expect(await tableRows(page, 'workers-table')).toEqual([
      ['127.0.0.1:50051', 'healthy', '3', '3', '0', '13', '4'],
      ['127.0.0.1:50052', 'down', '0', '0', '0', '0', '0'],
    ]);
    expect(await tableRows(page, 'quality-table')).toEqual([
      ['copa', '39.01 seed', '59.057.0–60.0 · 3 seeds', '59.057.0–61.0 · 3 seeds'],
      ['boolq', '52.21 seed', '—', '68.067.8–69.4 · 3 seeds'],
    ]);
    expect(await headerCells(page, 'quality-table')).toEqual(['Task', 'base', 'para', 'lora']);

    expect(await page.getAttribute('#traffic-chart', 'aria-label')).toContain('latest second: 4 requests, 120 tokens');
    expect(await page.getAttribute('#latency-chart', 'aria-label')).toContain('p50 300 ms, p99 800 ms');
    expect(await page.getAttribute('#adapter-chart', 'aria-label')).toBe(
      'Requests per adapter: acme/support 29, copa 12, globex/faq 7, acme/billing 0.',
    );
    // The lines and bars are on the canvas, not just the axes: count pixels in each series' colour.
    expect(await pixelsOfColour(page, 'traffic-chart', palette.requests)).toBeGreaterThan(200);
    expect(await pixelsOfColour(page, 'traffic-chart', palette.tokens)).toBeGreaterThan(200);
    expect(await pixelsOfColour(page, 'latency-chart', palette.p50)).toBeGreaterThan(100);
    expect(await pixelsOfColour(page, 'latency-chart', palette.p99)).toBeGreaterThan(100);
    expect(await pixelsOfColour(page, 'adapter-chart', palette.adapterBars)).toBeGreaterThan(1_000);
  });

  it('shows the next poll without a reload', async () => {
    await waitForTile(page, 'requests-rate', '6.0', NEXT_POLL_MS);
    expect(gateway.overviewsServed).toBeGreaterThanOrEqual(2);
    // Everything below comes from the same (second) reply as the tile above.
    expect(await tileValues(page)).toMatchObject({ 'tokens-rate': '200', 'latency-p50': '315 ms', 'latency-p99': '900 ms' });
    expect((await tableRows(page, 'tenants-table'))[0]).toEqual(['acme', '2', '57', '2,850', '1,250']);
    expect((await tableRows(page, 'workers-table'))[0]).toEqual(['127.0.0.1:50051', 'healthy', '4', '3', '1', '12', '4']);
    expect(await page.getAttribute('#traffic-chart', 'aria-label')).toContain('latest second: 6 requests, 200 tokens');
    expect(await page.getAttribute('#latency-chart', 'aria-label')).toContain('p50 310 ms, p99 820 ms');
    expect(await page.getAttribute('#adapter-chart', 'aria-label')).toContain('acme/support 41, copa 16');

    await mkdir(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  it('keeps the key for the tab across a reload', async () => {
    await page.reload();
    await page.locator('#dashboard').waitFor({ state: 'visible' });
    expect(await page.locator('#login').isHidden()).toBe(true);
  });

  it('shows a banner while the gateway is unreachable, and recovers', async () => {
    gateway.unreachable = true;
    const banner = page.locator('#banner');
    await banner.waitFor({ state: 'visible', timeout: NEXT_POLL_MS });
    expect(await banner.textContent()).toContain('Cannot reach the gateway');
    expect(await page.getAttribute('#dashboard', 'class')).toContain('stale');
    // The last figures stay on screen.
    expect((await tableRows(page, 'tenants-table')).length).toBe(2);

    const servedBefore = gateway.overviewsServed;
    gateway.unreachable = false;
    await banner.waitFor({ state: 'hidden', timeout: NEXT_POLL_MS });
    expect(gateway.overviewsServed).toBeGreaterThan(servedBefore);
    expect(await page.getAttribute('#dashboard', 'class')).not.toContain('stale');
  });

  it('asks for the key again when the saved one stops working', async () => {
    gateway.operatorKey = 'rotated-key';
    try {
      await page.locator('#login-message').waitFor({ state: 'visible', timeout: NEXT_POLL_MS });
      expect(await page.textContent('#login-message')).toContain('did not accept that key (401)');
      expect(await page.locator('#dashboard').isHidden()).toBe(true);
      expect(await page.evaluate(() => sessionStorage.getItem('para.operatorKey'))).toBeNull();
    } finally {
      gateway.operatorKey = OPERATOR_KEY;
    }
  });

  it('explains a wrong key and a tenant key', async () => {
    const fresh = await browser.newPage();
    try {
      await fresh.goto(`${gateway.url}/dashboard/`);
      await fresh.fill('#key-input', 'not-the-key');
      await fresh.click('#login-form button[type="submit"]');
      await fresh.locator('#login-message').waitFor({ state: 'visible' });
      expect(await fresh.textContent('#login-message')).toBe(
        'The gateway did not accept that key (401). Enter the operator key.',
      );
      expect(await fresh.locator('#dashboard').isHidden()).toBe(true);
      expect(await fresh.evaluate(() => sessionStorage.getItem('para.operatorKey'))).toBeNull();

      await fresh.fill('#key-input', TENANT_KEY);
      await fresh.click('#login-form button[type="submit"]');
      await fresh.waitForFunction(() => document.getElementById('login-message')?.textContent?.includes('(403)'));
      expect(await fresh.textContent('#login-message')).toContain('belongs to a tenant');
    } finally {
      await fresh.close();
    }
  });

  it('raised no uncaught errors and requested nothing outside the gateway', () => {
    expect(pageErrors).toEqual([]);
    expect(foreignRequests).toEqual([]);
  });
});

async function waitForTile(page: Page, tile: string, value: string, timeout = 10_000): Promise<void> {
  await page.waitForFunction(
    ([id, expected]) => document.querySelector(`[data-tile="${id}"] .tile-value`)?.textContent === expected,
    [tile, value] as const,
    { timeout },
  );
}

async function tileValues(page: Page): Promise<Record<string, string>> {
  return page.$$eval('[data-tile]', (tiles) =>
    Object.fromEntries(tiles.map((tile) => [tile.getAttribute('data-tile'), tile.querySelector('.tile-value')?.textContent])),
  );
}

async function tableRows(page: Page, id: string): Promise<string[][]> {
  return page.$$eval(`#${id} tbody tr`, (rows) =>
    rows.map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent ?? '')),
  );
}

async function headerCells(page: Page, id: string): Promise<string[]> {
  return page.$$eval(`#${id} thead th`, (cells) => cells.map((cell) => cell.textContent ?? ''));
}

/** Pixels within a small distance of `hex`, allowing for anti-aliasing at line edges. */
async function pixelsOfColour(page: Page, canvasId: string, hex: string): Promise<number> {
  return page.evaluate(
    ([id, colour]) => {
      const canvas = document.getElementById(id) as HTMLCanvasElement;
      const context = canvas.getContext('2d');
      if (context === null) return 0;
      const target = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
      const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
      let count = 0;
      for (let i = 0; i < data.length; i += 4) {
        const close = target.every((channel, c) => Math.abs((data[i + c] ?? 0) - channel) <= 24);
        if (close && (data[i + 3] ?? 0) > 200) count += 1;
      }
      return count;
    },
    [canvasId, hex] as const,
  );
}
