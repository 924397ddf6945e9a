/** `flotilla image build|ls|rm`: the implementations, loaded when a command runs (declarations: image.ts). */
import { FlotillaError } from '../../errors';
import { buildImage, ensureImage, listImages, removeImage, type ImageInfo } from '../../provision/image';
import type { CommandRun } from '../command';
import { EXIT_OK } from '../exit-codes';
import { table } from '../format';

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MB`;

function describeImage(i: ImageInfo): string {
  return `image ${i.id.slice(0, 12)}: ${mb(i.sizes.diskBytes)} qcow2 (${mb(i.sizes.rootfsBytes)} root fs), kernel ${i.kernelVersion} ${mb(i.sizes.kernelBytes)}, initrd ${mb(i.sizes.initrdBytes)}; built in ${i.buildSeconds.toFixed(1)} s\n  ${i.disk}\n`;
}

export const build: CommandRun = async (p, io) => {
  const progress = (b: { step: string; phase: string; seconds?: number; detail?: string }) => {
    if (b.phase !== 'start') io.err(`    ${b.step} ${b.phase}${b.seconds !== undefined ? ` in ${b.seconds.toFixed(1)} s` : ''}${b.detail ? `: ${b.detail}` : ''}\n`);
  };
  const image = p.values.force ? await buildImage({}, progress) : await ensureImage({}, progress);
  io.out(p.values.json ? `${JSON.stringify(image, null, 2)}\n` : describeImage(image));
  return EXIT_OK;
};

export const ls: CommandRun = async (p, io) => {
  const images = listImages();
  io.out(p.values.json ? `${JSON.stringify(images, null, 2)}\n` : table(['IMAGE', 'CREATED', 'DISK', 'KERNEL', 'BUILD'], images.map((i) => [i.id.slice(0, 12), i.createdAt, mb(i.sizes.diskBytes), i.kernelVersion, `${i.buildSeconds.toFixed(0)}s`])));
  return EXIT_OK;
};

export const rm: CommandRun = async (p, io) => {
  if (p.positionals.length === 0) throw new FlotillaError('usage', 'flotilla image rm: give at least one image id (see flotilla image ls)');
  for (const prefix of p.positionals) {
    const matches = listImages().filter((i) => i.id.startsWith(prefix));
    if (matches.length !== 1) throw new FlotillaError(matches.length ? 'usage' : 'not-found', `image ${prefix}: ${matches.length ? 'ambiguous prefix' : 'no such image'}`);
    removeImage(matches[0]!.id);
    io.out(`removed image ${matches[0]!.id.slice(0, 12)}\n`);
  }
  return EXIT_OK;
};
