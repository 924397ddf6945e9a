/**
 * systemd time spans (systemd.time(7)): `100ms`, `5s`, `1min 30s`, `infinity`, read as
 * milliseconds. Used for the process runner's timeouts and by the scheduler's unit policy.
 */

const TIME_UNITS_MS: Readonly<Record<string, number>> = {
  usec: 0.001,
  us: 0.001,
  µs: 0.001,
  msec: 1,
  ms: 1,
  seconds: 1000,
  second: 1000,
  sec: 1000,
  s: 1000,
  minutes: 60_000,
  minute: 60_000,
  min: 60_000,
  m: 60_000,
  hours: 3_600_000,
  hour: 3_600_000,
  hr: 3_600_000,
  h: 3_600_000,
  days: 86_400_000,
  day: 86_400_000,
  d: 86_400_000,
  weeks: 604_800_000,
  week: 604_800_000,
  w: 604_800_000,
  months: 2_629_800_000,
  month: 2_629_800_000,
  M: 2_629_800_000,
  years: 31_557_600_000,
  year: 31_557_600_000,
  y: 31_557_600_000,
};

/**
 * A systemd time span in milliseconds: `100ms`, `1s`, `2min`, `1min 30s`, `1.5s`, a bare
 * number (seconds), or `infinity` (Infinity). Throws Error for anything else.
 */
export function parseTimeSpan(value: string): number {
  const v = value.trim();
  if (v === 'infinity') return Infinity;
  if (v === '') throw new Error('empty time span');
  let total = 0;
  const re = /\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Zµ]*)/gy;
  let pos = 0;
  while (pos < v.length) {
    re.lastIndex = pos;
    const m = re.exec(v);
    if (!m || m[0] === '') throw new Error(`bad time span ${JSON.stringify(value)} (expected e.g. 100ms, 5s, 2min, 1min 30s)`);
    const unit = m[2] === '' ? 's' : m[2]!;
    const factor = TIME_UNITS_MS[unit];
    if (factor === undefined) throw new Error(`bad time span ${JSON.stringify(value)}: unknown unit ${unit}`);
    total += parseFloat(m[1]!) * factor;
    pos = re.lastIndex;
    while (pos < v.length && /\s/.test(v[pos]!)) pos++;
  }
  return total;
}
