import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { OverviewResult } from '../../src/api/fetchOverview';
import { createApp, POLL_INTERVAL_MS } from '../../src/app';
import type { KeyStore } from '../../src/auth/keyStore';
import { overviewWith } from './overviewBuilder';

/** The app against recording stand-ins for its views, with replies scripted per poll. */
function harness(savedKey: string | null, replies: OverviewResult[]) {
  let key = savedKey;
  const keys: KeyStore = { read: () => key, save: (k) => void (key = k), forget: () => void (key = null) };
  const dashboard = { show: vi.fn(), hide: vi.fn(), render: vi.fn(), markStale: vi.fn() };
  const login = { show: vi.fn(), hide: vi.fn() };
  const status = { showProblem: vi.fn(), clearProblem: vi.fn(), markUpdated: vi.fn(), setSignedIn: vi.fn() };
  const fetchOverview = vi.fn(async (_key: string) => replies.shift() ?? ok);
  const app = createApp({ keys, dashboard, login, status, fetchOverview });
  return { app, dashboard, login, status, fetchOverview, savedKey: () => key };
}

const ok: OverviewResult = { kind: 'ok', overview: overviewWith() };

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('app', () => {
  it('asks for the key when none is saved', async () => {
    const h = harness(null, []);
    h.app.start();
    await vi.advanceTimersByTimeAsync(POLL_INTERVAL_MS * 2);
    expect(h.login.show).toHaveBeenCalledWith();
    expect(h.fetchOverview).not.toHaveBeenCalled();
  });

  it('polls with a saved key and renders each reply', async () => {
    const h = harness('op-key', []);
    h.app.start();
    await vi.advanceTimersByTimeAsync(POLL_INTERVAL_MS);
    expect(h.fetchOverview).toHaveBeenCalledWith('op-key');
    expect(h.dashboard.render).toHaveBeenCalledTimes(2);
    expect(h.login.show).not.toHaveBeenCalled();
  });

  it('saves a submitted key and starts polling with it', async () => {
    const h = harness(null, []);
    h.app.start();
    h.app.useKey('new-key');
    await vi.advanceTimersByTimeAsync(0);
    expect(h.savedKey()).toBe('new-key');
    expect(h.fetchOverview).toHaveBeenCalledWith('new-key');
    expect(h.login.hide).toHaveBeenCalled();
  });

  it('forgets a rejected key, stops polling and asks again with the reason', async () => {
    const h = harness('old-key', [ok, { kind: 'rejected-key', status: 401, message: 'unknown key' }]);
    h.app.start();
    await vi.advanceTimersByTimeAsync(POLL_INTERVAL_MS);
    expect(h.savedKey()).toBeNull();
    expect(h.dashboard.hide).toHaveBeenCalled();
    expect(h.login.show).toHaveBeenCalledWith(expect.stringContaining('(401)'));
    await vi.advanceTimersByTimeAsync(POLL_INTERVAL_MS * 3);
    expect(h.fetchOverview).toHaveBeenCalledTimes(2);
  });

  it('shows a banner on a network error, keeps polling and clears it on recovery', async () => {
    const h = harness('op-key', [ok, { kind: 'unreachable', message: 'Failed to fetch' }, { kind: 'unreachable', message: 'Failed to fetch' }]);
    h.app.start();
    await vi.advanceTimersByTimeAsync(POLL_INTERVAL_MS);
    expect(h.status.showProblem).toHaveBeenCalledWith(expect.stringContaining('Cannot reach the gateway'));
    expect(h.dashboard.markStale).toHaveBeenLastCalledWith(true);
    expect(h.login.show).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(POLL_INTERVAL_MS * 2);
    expect(h.fetchOverview).toHaveBeenCalledTimes(4);
    expect(h.status.clearProblem).toHaveBeenCalled();
    expect(h.dashboard.markStale).toHaveBeenLastCalledWith(false);
    expect(h.savedKey()).toBe('op-key');
  });

  it('ignores a reply that arrives after the key was changed', async () => {
    let release: (result: OverviewResult) => void = () => {};
    const h = harness('old-key', []);
    h.fetchOverview.mockImplementationOnce(() => new Promise((resolve) => (release = resolve)));
    h.app.start();
    h.app.useKey('new-key');
    release({ kind: 'rejected-key', status: 401, message: 'old key revoked' });
    await vi.advanceTimersByTimeAsync(0);
    expect(h.login.show).not.toHaveBeenCalled();
    expect(h.savedKey()).toBe('new-key');
  });
});
