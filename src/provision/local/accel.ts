/**
 * Which accelerator QEMU should use. /dev/kvm existing is not enough: under broken nested
 * virtualisation `-accel kvm` aborts (`kvm_buf_set_msrs: Assertion`) or hangs with 100%
 * system time while the kernel probes EDD. So the probe boots the node kernel and initrd
 * under KVM with a short timeout (the initrd prints a marker and powers off when it sees
 * `flotilla.probe=1`) and falls back to TCG if that does not work.
 *
 * The answer is cached per boot of the host in /run/flotilla/accel.json (keyed by boot_id).
 * FLOTILLA_ACCEL=kvm|tcg overrides the probe.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Accelerator } from './qemu-args';
import { runDir } from '../../cluster/state';

export interface AccelProbe {
  accel: Accelerator;
  reason: string;
  /** How long the probe took (0 when from the cache or decided without booting). */
  seconds: number;
  cached: boolean;
}

export const QEMU_BIN = 'qemu-system-x86_64';

function bootId(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

function cacheFile(): string {
  return path.join(runDir(), 'accel.json');
}

/** Boots kernel+initrd under KVM until the marker appears (ok) or the timeout/exit (broken). */
function bootProbe(kernel: string, initrd: string, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    const args = [
      '-machine', 'pc,accel=kvm', '-cpu', 'host', '-smp', '1', '-m', '256',
      '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none', '-no-reboot',
      '-serial', 'stdio', '-kernel', kernel, '-initrd', initrd,
      '-append', 'console=ttyS0 flotilla.probe=1 panic=-1 quiet loglevel=3',
    ];
    const child = spawn(QEMU_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let done = false;
    const finish = (ok: boolean, detail: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      resolve({ ok, detail });
    };
    const timer = setTimeout(() => finish(false, `no marker from the guest within ${timeoutMs} ms (KVM hangs)`), timeoutMs);
    const onData = (d: Buffer): void => {
      out += d.toString('latin1');
      if (out.includes('FLOTILLA-PROBE-OK')) finish(true, 'guest kernel reached the initrd under KVM');
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('error', (err) => finish(false, `cannot run ${QEMU_BIN}: ${err.message}`));
    child.once('exit', (code, signal) => {
      if (!out.includes('FLOTILLA-PROBE-OK')) {
        const last = out.trim().split('\n').filter(Boolean).slice(-2).join(' | ').slice(0, 300);
        finish(false, `QEMU with KVM exited (${code ?? signal}) before the guest booted${last ? `: ${last}` : ''}`);
      }
    });
  });
}

/**
 * 'kvm' if KVM really boots the node kernel here, else 'tcg', with the reason. The image's
 * kernel and initrd are used for the test boot.
 */
export async function probeAccelerator(image: { kernel: string; initrd: string }, opts: { timeoutMs?: number; noCache?: boolean } = {}): Promise<AccelProbe> {
  const forced = process.env.FLOTILLA_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return { accel: forced, reason: `FLOTILLA_ACCEL=${forced}`, seconds: 0, cached: false };
  const id = bootId();
  if (!opts.noCache) {
    try {
      const c = JSON.parse(fs.readFileSync(cacheFile(), 'utf8')) as { bootId: string; accel: Accelerator; reason: string };
      if (c.bootId === id && (c.accel === 'kvm' || c.accel === 'tcg')) return { accel: c.accel, reason: c.reason, seconds: 0, cached: true };
    } catch {
      /* no cache yet */
    }
  }
  const t0 = performance.now();
  let result: { accel: Accelerator; reason: string };
  try {
    fs.accessSync('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK);
    const probe = await bootProbe(image.kernel, image.initrd, opts.timeoutMs ?? 20_000);
    result = probe.ok ? { accel: 'kvm', reason: probe.detail } : { accel: 'tcg', reason: `KVM unusable: ${probe.detail}` };
  } catch (err) {
    result = { accel: 'tcg', reason: `/dev/kvm not usable: ${(err as Error).message}` };
  }
  const seconds = Math.round((performance.now() - t0) / 100) / 10;
  try {
    fs.mkdirSync(runDir(), { recursive: true });
    fs.writeFileSync(cacheFile(), `${JSON.stringify({ bootId: id, ...result, probedAt: new Date().toISOString() })}\n`);
  } catch {
    /* cache is an optimisation */
  }
  return { ...result, seconds, cached: false };
}
