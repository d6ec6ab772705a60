// Keeps `para serve`'s engine workers running: a worker that dies is started again on the same address (the
// gateway takes it back at its next health check), after a delay that doubles with every failure in a row, so
// a worker that cannot start does not spin. The gateway keeps serving on the other workers meanwhile, and
// answers 503 while none is up.
import { type RunningWorker, type WorkerSpec, startWorker } from './workers.js';

export interface SupervisorOptions {
  /** Delay before the first restart; doubled after each failure in a row, up to maxDelayMs. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** A worker that has run this long has recovered: its next restart waits initialDelayMs again. */
  stableAfterMs?: number;
  log(message: string): void;
}

interface Slot {
  index: number;
  port: number;
  worker: RunningWorker | undefined;
  startedAt: number;
  failures: number;
  timer: NodeJS.Timeout | undefined;
}

export class WorkerSupervisor {
  private stopped = false;
  private readonly slots: Slot[];
  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly stableAfterMs: number;

  constructor(
    private readonly spec: WorkerSpec,
    workers: RunningWorker[],
    private readonly options: SupervisorOptions,
  ) {
    this.initialDelayMs = options.initialDelayMs ?? 1000;
    this.maxDelayMs = options.maxDelayMs ?? 30_000;
    this.stableAfterMs = options.stableAfterMs ?? 60_000;
    this.slots = workers.map((worker, index) => {
      const slot: Slot = { index, port: portOf(worker.address), worker, startedAt: Date.now(), failures: 0, timer: undefined };
      this.watch(slot, worker);
      return slot;
    });
  }

  /** The workers running now (a slot being restarted has none). */
  running(): RunningWorker[] {
    return this.slots.flatMap((s) => (s.worker ? [s.worker] : []));
  }

  /** No more restarts (the caller then stops the workers). */
  stop(): void {
    this.stopped = true;
    for (const slot of this.slots) clearTimeout(slot.timer);
  }

  private watch(slot: Slot, worker: RunningWorker): void {
    worker.process.once('close', (code, signal) => {
      slot.worker = undefined;
      if (this.stopped) return;
      if (Date.now() - slot.startedAt >= this.stableAfterMs) slot.failures = 0;
      const tail = worker.stderrTail();
      this.options.log(
        `engine worker ${worker.address} (pid ${worker.pid}) exited (${signal ?? `status ${code}`})${tail ? `:\n${tail.replace(/^/gm, '  | ')}` : ''}`,
      );
      this.schedule(slot);
    });
  }

  private schedule(slot: Slot): void {
    const delay = Math.min(this.maxDelayMs, this.initialDelayMs * 2 ** slot.failures);
    slot.failures += 1;
    this.options.log(`restarting engine worker ${slot.index + 1} on port ${slot.port} in ${(delay / 1000).toFixed(1)} s`);
    slot.timer = setTimeout(() => void this.restart(slot), delay);
    slot.timer.unref();
  }

  private async restart(slot: Slot): Promise<void> {
    if (this.stopped) return;
    try {
      const worker = await startWorker(this.spec, slot.index, slot.port);
      if (this.stopped) {
        worker.process.kill('SIGTERM');
        return;
      }
      slot.worker = worker;
      slot.startedAt = Date.now();
      this.watch(slot, worker);
      this.options.log(`engine worker ${slot.index + 1} restarted on ${worker.address} (pid ${worker.pid})`);
    } catch (err) {
      if (this.stopped) return;
      this.options.log(`engine worker ${slot.index + 1} could not be restarted: ${err instanceof Error ? err.message : String(err)}`);
      this.schedule(slot);
    }
  }
}

const portOf = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));
