import { describe, expect, it } from 'vitest';
import { browserSkipReason, REQUIRE_BROWSER_ENV } from '../browser';

describe('browserSkipReason', () => {
  const missing = '/nonexistent/chromium';

  it('skips with an explanation when Chromium is absent and not required', () => {
    expect(browserSkipReason(missing, {})).toMatch(/not found; install it with `apt-get install -y chromium`/);
  });

  it('does not skip when browser tests are required, so a missing Chromium fails them', () => {
    expect(browserSkipReason(missing, { [REQUIRE_BROWSER_ENV]: '1' })).toBeUndefined();
  });

  it('does not skip when Chromium is there', () => {
    expect(browserSkipReason(process.execPath, {})).toBeUndefined();
  });
});
