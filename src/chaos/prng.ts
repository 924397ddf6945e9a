/**
 * A small seeded PRNG (mulberry32): the same seed gives the same fault plan on every
 * machine and Node version, which Math.random cannot promise.
 */
import { FlotillaError } from '../errors';

export type Random = () => number;

/** Seeds are 32-bit unsigned integers. */
export function checkSeed(seed: number): number {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new FlotillaError('usage', `seed must be a whole number from 0 to 4294967295 (got ${seed})`);
  return seed;
}

/** Uniform numbers in [0, 1) from a 32-bit seed. */
export function mulberry32(seed: number): Random {
  let a = checkSeed(seed) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A copy of `items` in random order (Fisher-Yates). */
export function shuffle<T>(items: readonly T[], random: Random): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** One element chosen by a number in [0, 1) (the plan's `pick`), or undefined from an empty list. */
export function pickBy<T>(items: readonly T[], pick: number): T | undefined {
  if (items.length === 0) return undefined;
  return items[Math.min(items.length - 1, Math.floor(pick * items.length))];
}
