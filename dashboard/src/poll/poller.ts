export interface Poller {
  start(): void;
  stop(): void;
  readonly running: boolean;
}

export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  now(): number;
}

const browserTimers: Timers = {
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
  now: () => Date.now(),
};

/**
 * Runs `tick` at once, then every `intervalMs` measured from the start of the previous
 * tick. A tick never overlaps the one before it: if a request takes longer than the
 * interval, the next one starts as soon as it finishes. (setInterval would pile up
 * requests against a slow gateway.)
 */
export function createPoller(tick: () => Promise<void>, intervalMs: number, timers: Timers = browserTimers): Poller {
  let handle: unknown = null;
  let running = false;
  // Bumped by stop(), so a tick that was in flight during stop() does not reschedule.
  let generation = 0;

  async function runTick(forGeneration: number): Promise<void> {
    const startedAt = timers.now();
    try {
      await tick();
    } catch (error) {
      // A bug in rendering must not end polling; the console keeps the evidence.
      console.error('dashboard poll failed', error);
    }
    if (!running || forGeneration !== generation) return;
    const wait = Math.max(0, intervalMs - (timers.now() - startedAt));
    handle = timers.setTimeout(() => void runTick(forGeneration), wait);
  }

  return {
    start() {
      if (running) return;
      running = true;
      void runTick(generation);
    },
    stop() {
      running = false;
      generation += 1;
      if (handle !== null) timers.clearTimeout(handle);
      handle = null;
    },
    get running() {
      return running;
    },
  };
}
