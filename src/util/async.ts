/** Small async helpers shared by the engine, agent and CLI. */

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Runs `fn` over `items`, at most `limit` at a time; rejects with the first error after all settle. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  let firstError: unknown;
  let failed = false;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        try {
          results[i] = await fn(items[i]!, i);
        } catch (err) {
          if (!failed) [failed, firstError] = [true, err];
        }
      }
    }),
  );
  if (failed) throw firstError;
  return results;
}

/**
 * A level-triggered wake-up: `poke()` marks work pending; `next()` resolves when there
 * is (at once if already pending). Coalesces bursts of events into one reconcile.
 */
export class Signal {
  private pending = false;
  private waiter: (() => void) | undefined;

  poke(): void {
    this.pending = true;
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** Waits for a poke, then clears it. */
  async next(): Promise<void> {
    if (!this.pending) await new Promise<void>((resolve) => (this.waiter = resolve));
    this.pending = false;
  }
}
