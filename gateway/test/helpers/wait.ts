import { vi } from 'vitest';

/**
 * Waits until `condition` holds, polling every 50 ms, or fails after `ms` naming `what` (and, where given, what
 * `explain` says of the state then: for a failure that happens once in many runs, the state is all there is).
 */
export async function until(
  condition: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
  explain?: () => string,
): Promise<void> {
  await vi.waitFor(
    async () => {
      if (!(await condition())) throw new Error(`timed out after ${ms} ms waiting for ${what}${explain ? ` (${explain()})` : ''}`);
    },
    { timeout: ms, interval: 50 },
  );
}
