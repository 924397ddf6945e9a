/**
 * `pulumi-nodejs:dynamic/flotilla:LocalInventory`: writes the stack's inventory and the files it
 * references (etcd CA, client certificate and key; the SSH key when it was given as a secret)
 * into a directory on the machine running Pulumi, so that `flotilla verify --inventory
 * DIR/inventory.json` works right after `pulumi up`; `pulumi destroy` removes them. The files are
 * a secret input; the outputs only name them. Private files are written 0600 in a 0700 directory.
 */
import * as pulumi from '@pulumi/pulumi';

export interface LocalFile {
  name: string;
  contents: string;
  mode: number;
}

export interface LocalInventoryInputs {
  /** Absolute directory. */
  dir: string;
  /** Written as inventory.json (0644). */
  inventory: Record<string, unknown>;
  /** Secret: written next to it, each with its mode. */
  files: LocalFile[];
}

export interface LocalInventoryOutputs {
  dir: string;
  inventoryFile: string;
  names: string[];
  digest: string;
}

const INVENTORY_NAME = 'inventory.json';

function digestOf(p: LocalInventoryInputs): string {
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  const h = createHash('sha256').update(JSON.stringify(p.inventory));
  for (const f of [...p.files].sort((a, b) => (a.name < b.name ? -1 : 1))) h.update(`\0${f.name}\0${f.mode}\0${f.contents}`);
  return h.digest('hex');
}

/** Writes the files (each via a temporary file and rename), removes `stale` names; returns the outputs. */
function writeAll(p: LocalInventoryInputs, stale: readonly string[]): LocalInventoryOutputs {
  const fs = require('node:fs') as typeof import('node:fs');
  const path = require('node:path') as typeof import('node:path');
  fs.mkdirSync(p.dir, { recursive: true, mode: 0o700 });
  const write = (name: string, contents: string, mode: number): void => {
    const file = path.join(p.dir, name);
    const tmp = `${file}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, contents, { mode });
    fs.chmodSync(tmp, mode);
    fs.renameSync(tmp, file);
  };
  for (const f of p.files) write(f.name, f.contents, f.mode);
  write(INVENTORY_NAME, `${JSON.stringify(p.inventory, null, 2)}\n`, 0o644);
  const names = p.files.map((f) => f.name);
  for (const s of stale) if (!names.includes(s)) fs.rmSync(path.join(p.dir, s), { force: true });
  return { dir: p.dir, inventoryFile: path.join(p.dir, INVENTORY_NAME), names, digest: digestOf(p) };
}

const SAFE_NAME = /^[A-Za-z0-9._-]+$/;

export const localInventoryProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: LocalInventoryInputs, news: LocalInventoryInputs): Promise<pulumi.dynamic.CheckResult> {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    if (typeof news.dir !== 'string' || !news.dir.startsWith('/')) failures.push({ property: 'dir', reason: 'must be an absolute path' });
    if (typeof news.inventory !== 'object' || news.inventory === null) failures.push({ property: 'inventory', reason: 'must be an object' });
    if (!Array.isArray(news.files) || news.files.some((f) => !f || !SAFE_NAME.test(String(f.name)) || f.name === INVENTORY_NAME || typeof f.contents !== 'string' || !Number.isInteger(f.mode))) {
      failures.push({ property: 'files', reason: 'must be { name (a plain file name), contents, mode } entries' });
    }
    return { inputs: news, failures };
  },

  async diff(_id: pulumi.ID, olds: LocalInventoryOutputs, news: LocalInventoryInputs): Promise<pulumi.dynamic.DiffResult> {
    const replaces = olds.dir !== news.dir ? ['dir'] : [];
    return { changes: replaces.length > 0 || olds.digest !== digestOf(news), replaces, deleteBeforeReplace: true };
  },

  async create(inputs: LocalInventoryInputs): Promise<pulumi.dynamic.CreateResult> {
    const outs = writeAll(inputs, []);
    return { id: outs.inventoryFile, outs };
  },

  async update(_id: pulumi.ID, olds: LocalInventoryOutputs, news: LocalInventoryInputs): Promise<pulumi.dynamic.UpdateResult> {
    return { outs: writeAll(news, olds.names ?? []) };
  },

  async delete(_id: pulumi.ID, props: LocalInventoryOutputs): Promise<void> {
    const fs = require('node:fs') as typeof import('node:fs');
    const path = require('node:path') as typeof import('node:path');
    for (const n of [...(props.names ?? []), INVENTORY_NAME]) fs.rmSync(path.join(props.dir, n), { force: true });
    try {
      fs.rmdirSync(props.dir);
    } catch {
      /* not empty (the user keeps something there) or already gone */
    }
  },
};

export type LocalInventoryArgs = { [K in keyof LocalInventoryInputs]: pulumi.Input<LocalInventoryInputs[K]> };

export class LocalInventory extends pulumi.dynamic.Resource {
  declare readonly inventoryFile: pulumi.Output<string>;
  declare readonly dir: pulumi.Output<string>;

  constructor(name: string, args: LocalInventoryArgs, opts: pulumi.CustomResourceOptions = {}) {
    super(localInventoryProvider, name, { ...args, inventoryFile: undefined, names: undefined, digest: undefined }, opts, 'flotilla', 'LocalInventory');
  }
}
