/**
 * The uncompressed kernel for direct boot. Debian's bzImage carries an XZ-compressed vmlinux
 * that the guest decompresses itself; under TCG that costs ~4 s of emulated CPU per boot
 * (measured: 5.8-6.1 s to reach the initrd with the bzImage, 2.0-2.3 s with the ELF). QEMU boots
 * an ELF vmlinux through its PVH entry point (Debian builds with CONFIG_PVH=y), so the image
 * carries the decompressed ELF and the guest skips that work.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { FlotillaError } from '../../errors';
import { runTool } from '../exec';

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const XEN_ELFNOTE_PHYS32_ENTRY = 18;

/** Offset of the XZ stream inside a bzImage (the compressed vmlinux), or -1. */
export function xzPayloadOffset(bzImage: Buffer): number {
  // The payload follows the real-mode setup; its header says where ((setup_sects + 1) * 512 + payload_offset).
  if (bzImage.length > 0x250 && bzImage.toString('latin1', 0x202, 0x206) === 'HdrS') {
    const setupSects = bzImage[0x1f1] || 4;
    const payloadOffset = bzImage.readUInt32LE(0x248);
    const off = (setupSects + 1) * 512 + payloadOffset;
    if (bzImage.subarray(off, off + 6).equals(XZ_MAGIC)) return off;
  }
  return bzImage.indexOf(XZ_MAGIC);
}

/** True if `elf` is a 64-bit ELF whose notes hold a PVH entry point (Xen note type 18). */
export function hasPvhEntry(elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + 56 > elf.length || elf.readUInt32LE(ph) !== 4 /* PT_NOTE */) continue;
    let off = Number(elf.readBigUInt64LE(ph + 8));
    const end = off + Number(elf.readBigUInt64LE(ph + 32));
    while (off + 12 <= end && end <= elf.length) {
      const namesz = elf.readUInt32LE(off);
      const descsz = elf.readUInt32LE(off + 4);
      const type = elf.readUInt32LE(off + 8);
      const name = elf.toString('latin1', off + 12, off + 12 + Math.max(0, namesz - 1));
      if (name === 'Xen' && type === XEN_ELFNOTE_PHYS32_ENTRY) return true;
      off += 12 + Math.ceil(namesz / 4) * 4 + Math.ceil(descsz / 4) * 4;
    }
  }
  return false;
}

/**
 * Writes the vmlinux ELF inside `bzImagePath` to `outPath` (with the host's xz) and checks that
 * it can be booted through PVH. Throws if the kernel is not XZ-compressed or has no PVH entry.
 */
export async function extractVmlinux(bzImagePath: string, outPath: string, logFile?: string): Promise<void> {
  const bz = fs.readFileSync(bzImagePath);
  const off = xzPayloadOffset(bz);
  if (off < 0) throw new FlotillaError('external', `${bzImagePath}: no XZ-compressed payload found (kernel built with another compressor?)`);
  const xzFile = `${outPath}.xz`;
  fs.writeFileSync(xzFile, bz.subarray(off));
  try {
    // The payload is followed by the bzImage's trailer; xz stops at the end of its stream.
    const out = fs.openSync(outPath, 'w');
    try {
      await new Promise<void>((resolve, reject) => {
        const child = spawn('xz', ['-dc', '--single-stream', xzFile], { stdio: ['ignore', out, 'pipe'] });
        let err = '';
        child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
        child.once('error', (e) => reject(new FlotillaError('missing-tool', `xz: ${e.message} (run scripts/setup-host.sh)`)));
        child.once('close', (code) => (code === 0 ? resolve() : reject(new FlotillaError('external', `xz -dc ${xzFile}: exit ${code}: ${err.trim()}`))));
      });
    } finally {
      fs.closeSync(out);
    }
  } finally {
    fs.rmSync(xzFile, { force: true });
  }
  if (logFile) await runTool('ls', ['-l', bzImagePath, outPath], { logFile });
  if (!hasPvhEntry(fs.readFileSync(outPath))) throw new FlotillaError('external', `${outPath}: no PVH entry point (Xen ELF note 18); the kernel needs CONFIG_PVH=y`);
}
