import './styles.css';
import { createApp } from './app';
import { createKeyStore } from './auth/keyStore';
import { createDashboardView } from './view/dashboardView';
import { createLoginView } from './view/loginView';
import { createStatusBar } from './view/statusBar';

// The views call back into the app (a submitted key, "Change key") while the app
// drives the views; those callbacks only fire after `app` exists.
const app = createApp({
  keys: createKeyStore(window.sessionStorage),
  dashboard: createDashboardView(),
  login: createLoginView((key) => app.useKey(key)),
  status: createStatusBar(() => app.signOut()),
});
app.start();
