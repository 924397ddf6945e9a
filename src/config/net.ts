/** IPv4 helpers for the cluster network. */

export function ipv4ToInt(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p, i) => p > 255 || (m[i + 1]!.length > 1 && m[i + 1]!.startsWith('0')))) return undefined;
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function intToIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export interface Ipv4Net {
  network: number;
  mask: number;
  broadcast: number;
  prefixLength: number;
}

export function parseIPv4Cidr(s: string): Ipv4Net | undefined {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s);
  if (!m) return undefined;
  const ip = ipv4ToInt(m[1]!);
  const len = Number(m[2]);
  if (ip === undefined || len > 32) return undefined;
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  const network = (ip & mask) >>> 0;
  if (network !== ip) return undefined; // host bits set: almost certainly a typo
  return { network, mask, broadcast: (network | (~mask >>> 0)) >>> 0, prefixLength: len };
}
