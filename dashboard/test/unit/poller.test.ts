import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createPoller } from '../../src/poll/poller';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('createPoller', () => {
  it('ticks at once and then every interval', async () => {
    const tick = vi.fn(async () => {});
    createPoller(tick, 2_000).start();
    await vi.advanceTimersByTimeAsync(0);
    expect(tick).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1_999);
    expect(tick).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(tick).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(4_000);
    expect(tick).toHaveBeenCalledTimes(4);
  });

  it('never overlaps a slow tick', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const tick = vi.fn(async () => {
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      inFlight -= 1;
    });
    createPoller(tick, 2_000).start();
    await vi.advanceTimersByTimeAsync(12_000);
    expect(maxInFlight).toBe(1);
    // 5 s per tick with no wait in between: ticks start at 0, 5 and 10 s.
    expect(tick).toHaveBeenCalledTimes(3);
  });

  it('stops, even while a tick is in flight', async () => {
    let finish: () => void = () => {};
    const tick = vi.fn(() => new Promise<void>((resolve) => (finish = resolve)));
    const poller = createPoller(tick, 2_000);
    poller.start();
    await vi.advanceTimersByTimeAsync(0);
    poller.stop();
    finish();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(tick).toHaveBeenCalledTimes(1);
    expect(poller.running).toBe(false);
  });

  it('keeps polling after a tick throws', async () => {
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {});
    const tick = vi.fn(async () => {
      throw new Error('render bug');
    });
    createPoller(tick, 2_000).start();
    await vi.advanceTimersByTimeAsync(4_000);
    expect(tick).toHaveBeenCalledTimes(3);
    expect(errors).toHaveBeenCalled();
    errors.mockRestore();
  });
});
