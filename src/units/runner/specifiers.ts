/**
 * systemd specifiers (systemd.unit(5)): `%n`, `%i`, `%H` and the rest, expanded in unit
 * settings from the unit's name and the host's facts. Expansion is pure; hostSpecifiers
 * reads this host's facts for the process runner.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { UnitNameInfo } from '../unit-file';

/** Host facts for the host specifiers; all optional so pure callers can leave them out. */
export interface SpecifierContext {
  hostname?: string;
  machineId?: string;
  /** %t: the runtime directory (/run for system services). */
  runtimeDir?: string;
  home?: string;
  userName?: string;
  uid?: number;
}

/** systemd's unit_name_unescape: `-` is `/`, `\xNN` is the byte NN. */
function unescapeUnitName(s: string): string {
  return s.replace(/\\x([0-9a-fA-F]{2})|-/g, (m, hex: string | undefined) => (hex ? String.fromCharCode(parseInt(hex, 16)) : m === '-' ? '/' : m));
}

/**
 * Expands systemd specifiers (systemd.unit(5)): %n %N %p %P %i %I %f %H %m %t %T %V %h
 * %u %U %%. Throws Error for others, or when a host fact is needed but missing.
 */
export function expandSpecifiers(value: string, info: UnitNameInfo, ctx: SpecifierContext): string {
  let out = '';
  const need = <T>(v: T | undefined, spec: string): T => {
    if (v === undefined) throw new Error(`specifier %${spec} needs a value this host does not provide`);
    return v;
  };
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c !== '%') {
      out += c;
      continue;
    }
    const s = value[++i];
    switch (s) {
      case '%':
        out += '%';
        break;
      case 'n':
        out += info.name;
        break;
      case 'N':
        out += info.stem;
        break;
      case 'p':
        out += info.prefix;
        break;
      case 'P':
        out += unescapeUnitName(info.prefix);
        break;
      case 'i':
        out += info.instance;
        break;
      case 'I':
        out += unescapeUnitName(info.instance);
        break;
      case 'f':
        out += `/${unescapeUnitName(info.instance || info.prefix).replace(/^\/+/, '')}`;
        break;
      case 'H':
        out += need(ctx.hostname, 'H');
        break;
      case 'm':
        out += need(ctx.machineId, 'm');
        break;
      case 't':
        out += ctx.runtimeDir ?? '/run';
        break;
      case 'T':
        out += '/tmp';
        break;
      case 'V':
        out += '/var/tmp';
        break;
      case 'h':
        out += need(ctx.home, 'h');
        break;
      case 'u':
        out += need(ctx.userName, 'u');
        break;
      case 'U':
        out += String(need(ctx.uid, 'U'));
        break;
      case undefined:
        throw new Error('lone "%" at the end (write %% for a literal %)');
      default:
        throw new Error(`unsupported specifier %${s} (write %% for a literal %)`);
    }
  }
  return out;
}

/** Host facts for the host specifiers, read once. */
export function hostSpecifiers(): SpecifierContext {
  let machineId: string | undefined;
  try {
    machineId = fs.readFileSync('/etc/machine-id', 'utf8').trim() || undefined;
  } catch {
    machineId = undefined;
  }
  const user = os.userInfo();
  return {
    hostname: os.hostname(),
    machineId,
    runtimeDir: user.uid === 0 ? '/run' : (process.env.XDG_RUNTIME_DIR ?? '/run'),
    home: user.homedir,
    userName: user.username,
    uid: user.uid,
  };
}
