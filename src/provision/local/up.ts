/** The local platform's `up` and `down`: QEMU processes in the cluster's own network namespace. */
import * as fs from 'node:fs';
import { clusterDir } from '../../cluster/store';
import { upCluster, type Launcher, type UpOptions, type UpResult } from '../up';
import { destroyCluster, startCluster } from './cluster';

/** QEMU processes in the cluster's network namespace (src/provision/local/cluster.ts). */
export const localLauncher: Launcher = {
  platform: 'local',
  async launch({ spec, rendered, image, accel, boot, progress }) {
    const c = await startCluster({
      spec,
      rendered,
      image,
      accel,
      boot,
      progress: (b) => progress({ phase: 'launch', state: 'info', ...(b.seconds !== undefined ? { seconds: b.seconds } : {}), detail: `${b.step} ${b.phase === 'cached' ? 'cached' : b.phase}${b.detail ? `: ${b.detail}` : ''}` }),
    });
    if (c.boot.fallback) progress({ phase: 'launch', state: 'info', detail: `snapshot boot not possible, booting fresh: ${c.boot.fallback}` });
    return {
      netns: c.netns,
      nodes: c.nodes.map((n) => ({ name: n.name, sshPort: n.sshPort, consoleLog: n.consoleLog, pidFile: n.pidFile, launchedAt: n.launchedAt })),
      detail: `${c.nodes.length} QEMU processes in netns ${c.netns}, ${c.boot.mode === 'snapshot' ? `restored from snapshot template ${c.boot.templates!.join(', ')}` : 'booted from the kernel'}`,
      boot: c.boot,
    };
  },
  async halt(name) {
    const stopped = await destroyCluster(name, { keepFiles: true });
    return `stopped the cluster's ${stopped.length} VM${stopped.length === 1 ? '' : 's'}; its files stay in ${clusterDir(name)} until 'flotilla down --name ${name}'`;
  },
};

export async function upLocal(opts: UpOptions): Promise<UpResult> {
  return upCluster(opts, localLauncher);
}

export async function downLocal(name: string): Promise<{ stopped: string[]; existed: boolean }> {
  const existed = fs.existsSync(clusterDir(name));
  const stopped = await destroyCluster(name);
  return { stopped, existed };
}
