import { rejectedKeyMessage, transientFailureMessage } from './api/describeFailure';
import { fetchOverview, type OverviewResult } from './api/fetchOverview';
import type { KeyStore } from './auth/keyStore';
import { createPoller, type Poller } from './poll/poller';
import type { DashboardView } from './view/dashboardView';
import type { LoginView } from './view/loginView';
import type { StatusBar } from './view/statusBar';

export const POLL_INTERVAL_MS = 2_000;

export interface AppParts {
  keys: KeyStore;
  dashboard: DashboardView;
  login: LoginView;
  status: StatusBar;
  fetchOverview?: (key: string) => Promise<OverviewResult>;
}

/**
 * The page's two states: asking for the key, and polling with it. A refused key
 * returns to the first; any other failure stays in the second and retries.
 */
export interface App {
  start(): void;
  useKey(key: string): void;
  signOut(message?: string): void;
}

export function createApp(parts: AppParts): App {
  const load = parts.fetchOverview ?? ((key: string) => fetchOverview(key));
  let poller: Poller | null = null;

  function handle(result: OverviewResult): void {
    switch (result.kind) {
      case 'ok':
        parts.status.clearProblem();
        parts.dashboard.markStale(false);
        parts.dashboard.show();
        parts.dashboard.render(result.overview);
        parts.status.markUpdated(new Date());
        return;
      case 'rejected-key':
        app.signOut(rejectedKeyMessage(result));
        return;
      case 'gateway-error':
      case 'unreachable':
        parts.status.showProblem(transientFailureMessage(result, POLL_INTERVAL_MS / 1_000));
        parts.dashboard.markStale(true);
        return;
    }
  }

  const app: App = {
    start() {
      const saved = parts.keys.read();
      if (saved === null) parts.login.show();
      else app.useKey(saved);
    },
    useKey(key) {
      poller?.stop();
      parts.keys.save(key);
      parts.login.hide();
      parts.status.setSignedIn(true);
      const next = createPoller(async () => {
        const result = await load(key);
        // A reply to a key that was since replaced must not draw over the new state.
        if (poller !== next) return;
        handle(result);
      }, POLL_INTERVAL_MS);
      poller = next;
      next.start();
    },
    signOut(message) {
      poller?.stop();
      poller = null;
      parts.keys.forget();
      parts.status.clearProblem();
      parts.status.setSignedIn(false);
      parts.dashboard.hide();
      parts.login.show(message);
    },
  };
  return app;
}
