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

/** `p`, or the signal's reason as soon as it aborts (the promise itself is left to settle). */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/**
 * `p`, or `err()` if it has not settled within `ms`. The late settling of `p` is ignored (a
 * rejection included: it is never unhandled).
 */
export function withTimeout<T>(p: Promise<T>, ms: number, err: () => Error): Promise<T> {
  p.catch(() => undefined);
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(err()), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
