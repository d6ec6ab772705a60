import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/**
 * Headless Chromium for browser tests, driven through playwright-core. Debian's
 * package is used (`apt-get install -y chromium`) rather than a downloaded build,
 * because test machines reach no network beyond the npm registry.
 */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/** Set (to anything) where browser tests must run; CI sets it after installing Chromium. */
export const REQUIRE_BROWSER_ENV = 'PARA_REQUIRE_BROWSER';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  // Without these three Chromium keeps dialing out to Google's services, and on a
  // closed network the refused connections slow start-up and fill the logs.
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Why browser tests cannot run here, or undefined when they can. They are skipped only
 * when Chromium is absent and nobody demanded them; with PARA_REQUIRE_BROWSER set, a
 * missing Chromium is a failure of launchBrowser() instead.
 */
export function browserSkipReason(
  chromiumPath = CHROMIUM_PATH,
  env: Record<string, string | undefined> = process.env,
): string | undefined {
  if (existsSync(chromiumPath) || env[REQUIRE_BROWSER_ENV]) return undefined;
  return `${chromiumPath} not found; install it with \`apt-get install -y chromium\` (set ${REQUIRE_BROWSER_ENV}=1 to make this a failure)`;
}

export interface LaunchedBrowser {
  /** One context on a fresh profile; each page still has its own sessionStorage. */
  context: BrowserContext;
  newPage(): Promise<Page>;
  /** Closes Chromium and deletes its profile directory. */
  close(): Promise<void>;
}

export interface LaunchOptions {
  viewport?: { width: number; height: number };
}

export async function launchBrowser({ viewport = { width: 1280, height: 900 } }: LaunchOptions = {}): Promise<LaunchedBrowser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`${REQUIRE_BROWSER_ENV} is set but ${CHROMIUM_PATH} is missing: run \`apt-get install -y chromium\``);
  }
  // A fresh profile every launch: nothing cached or stored by an earlier run leaks in.
  const userDataDir = await mkdtemp(join(tmpdir(), 'para-chromium-'));
  try {
    const context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport,
    });
    return {
      context,
      newPage: () => context.newPage(),
      async close() {
        await context.close();
        await rm(userDataDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await rm(userDataDir, { recursive: true, force: true });
    throw error;
  }
}
