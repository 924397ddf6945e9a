/**
 * Real VMs: the cached node image (built here if missing, with progress on stderr) boots a
 * 2-node cluster from Flotilla's rendered cloud-config under QEMU (TCG when KVM is unusable),
 * both nodes restored from one snapshot template (the default), which they must not share any
 * identity with or through; a damaged template is built again, never restored.
 * SSH must work with the pinned host key and a real command; a wrong pinned key must be
 * refused; the nodes must reach each other over the cluster network. Everything started here
 * is stopped by PID (and the namespace deleted) even when a test fails or the process dies.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { utils } from 'ssh2';
import { loadSpecObject } from '../../src/config/load';
import { renderCluster, type RenderedNode } from '../../src/config/render';
import { ensureSecrets } from '../../src/config/secrets';
import type { ResolvedSpec } from '../../src/config/spec';
import { probeAccelerator, type AccelProbe } from '../../src/provision/local/accel';
import { destroyCluster, localNodeTarget, startCluster, waitNodeSsh, type LocalCluster, type LoginKey } from '../../src/provision/local/cluster';
import { ensureImage, getImage, type ImageInfo } from '../../src/provision/image';
import { cpuSeconds, isOurQemu, namespaceExists, stopNode } from '../../src/provision/local/qemu';
import { nodeShape } from '../../src/provision/local/node-vm';
import { checkTemplate, ensureTemplate, listTemplates, type TemplateInfo } from '../../src/provision/local/template';
import type { BuildProgress } from '../../src/provision/image';
import { HostKeyMismatchError, fingerprint, publicKeyBlob, waitForSsh } from '../../src/ssh';
import { runOnce, withTarget } from '../helpers/node-ssh';

const CLUSTER = `t${process.pid}`;
const log = (msg: string): void => void process.stderr.write(`# ${msg}\n`);

/** Last-resort cleanup if the process ends without the after() hook (crash, timeout, signal). */
let live: LocalCluster | undefined;
function emergencyCleanup(): void {
  if (!live) return;
  for (const n of live.nodes) {
    if (isOurQemu(n.pid, n.pidFile)) {
      try {
        process.kill(n.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  spawnSync('ip', ['netns', 'delete', live.netns]);
  fs.rmSync(live.dir, { recursive: true, force: true });
  live = undefined;
}
process.on('exit', emergencyCleanup);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    emergencyCleanup();
    process.kill(process.pid, sig);
  });
}

describe('local QEMU nodes (real VMs)', { timeout: 40 * 60_000 }, () => {
  let image: ImageInfo;
  let accel: AccelProbe;
  let spec: ResolvedSpec;
  let rendered: RenderedNode[];
  let auth: LoginKey;
  let cluster: LocalCluster;

  before(async () => {
    const t0 = Date.now();
    image = await ensureImage({}, (p) => log(`image: ${p.step} ${p.phase}${p.seconds !== undefined ? ` ${p.seconds}s` : ''}${p.detail ? ` ${p.detail}` : ''}${p.phase === 'start' && p.log ? ` (log ${p.log})` : ''}`));
    log(`image ${image.id.slice(0, 12)} ready after ${((Date.now() - t0) / 1000).toFixed(1)} s (${(image.sizes.diskBytes / 1e6).toFixed(0)} MB qcow2)`);
    accel = await probeAccelerator(image);
    log(`accelerator: ${accel.accel} (${accel.reason})`);
    const key = utils.generateKeyPairSync('ed25519', { comment: 'boot-test@flotilla' });
    auth = { user: 'core', privateKey: key.private };
    spec = loadSpecObject({ name: CLUSTER, nodes: [{ name: 'node1' }, { name: 'node2' }], ssh: { authorizedKeys: [key.public.trim()] } });
    rendered = renderCluster(spec, ensureSecrets(spec));
    cluster = await startCluster({ spec, rendered, image, accel: accel.accel });
    live = cluster;
  });

  after(async () => {
    if (!cluster) return;
    const stopped = await destroyCluster(cluster.name);
    log(`stopped ${stopped.join(', ') || 'nothing'}`);
    for (const n of cluster.nodes) assert.equal(isOurQemu(n.pid, n.pidFile), false, `QEMU ${n.pid} still running`);
    assert.equal(namespaceExists(cluster.netns), false);
    assert.equal(fs.existsSync(cluster.dir), false);
    live = undefined;
  });

  it('caches the image: asking again returns it without building', async () => {
    const t0 = Date.now();
    const again = await ensureImage();
    assert.equal(again.id, image.id);
    assert.ok(Date.now() - t0 < 30_000, 'ensureImage on a cached image must not rebuild');
    assert.deepEqual(getImage(image.id)?.disk, image.disk);
    const meta = JSON.parse(fs.readFileSync(path.join(image.dir, 'image.json'), 'utf8')) as ImageInfo;
    assert.ok(meta.buildSeconds > 0 && meta.sizes.diskBytes > 0);
  });

  it('runs QEMU inside the cluster namespace with restricted user networking', () => {
    for (const n of cluster.nodes) {
      assert.ok(isOurQemu(n.pid, n.pidFile));
      const argv = fs.readFileSync(`/proc/${n.pid}/cmdline`, 'utf8').split('\0');
      assert.ok(argv.includes(`user,id=uplink,restrict=on,hostfwd=tcp:127.0.0.1:${n.sshPort}-:22`));
      assert.notEqual(fs.readlinkSync(`/proc/${n.pid}/ns/net`), fs.readlinkSync('/proc/self/ns/net'), 'QEMU must not share our network namespace');
    }
  });

  it('answers SSH with the pinned host key and runs commands; cloud-init finishes', async () => {
    const node = cluster.nodes[0]!;
    const ssh = await waitNodeSsh(cluster, node, auth, 10 * 60_000);
    log(`${node.name}: SSH after ${ssh.toFixed(1)} s (QEMU CPU ${cpuSeconds(node.pid)} s)`);
    await withTarget(localNodeTarget(cluster, node, auth), async (client) => {
      const host = await client.exec('hostname && id -un');
      assert.equal(host.code, 0);
      assert.deepEqual(host.stdout.trim().split('\n'), ['node1', 'core']);
      const done = await client.exec('while [ ! -e /var/lib/cloud/instance/boot-finished ] || [ ! -e /run/cloud-init/result.json ]; do sleep 0.5; done; cloud-init status --long', { timeoutMs: 10 * 60_000 });
      log(`${node.name}: cloud-init done after ${((Date.now() - node.launchedAt) / 1000).toFixed(1)} s`);
      assert.match(done.stdout, /^status: done$/m, done.stdout + done.stderr);
      // What the rendered cloud-config asked for is in place.
      const files = await client.exec('test -f /etc/flotilla/fleetd.json && systemctl is-enabled flotilla-fleetd.path && sudo -n true && echo ok');
      assert.equal(files.stdout.trim().split('\n').pop(), 'ok', files.stdout + files.stderr);
    });
  });

  it('refuses a node that presents a different host key than the pinned one', async () => {
    const node = cluster.nodes[0]!;
    const wrong = utils.generateKeyPairSync('ed25519').public.trim();
    const t0 = Date.now();
    await assert.rejects(
      waitForSsh({ ...localNodeTarget(cluster, node, auth), hostKey: wrong }, Date.now() + 60_000),
      (err: unknown) => err instanceof HostKeyMismatchError && err.presentedFingerprint === fingerprint(publicKeyBlob(node.hostPublicKey)),
    );
    assert.ok(Date.now() - t0 < 30_000, 'a mismatch is final, not retried until the deadline');
    // Another node's (valid, pinned elsewhere) key is just as wrong.
    await assert.rejects(runOnce({ ...localNodeTarget(cluster, node, auth), hostKey: cluster.nodes[1]!.hostPublicKey }, 'true'), HostKeyMismatchError);
  });

  it('connects the nodes over the cluster network', async () => {
    const [n1, n2] = cluster.nodes as [LocalCluster['nodes'][0], LocalCluster['nodes'][0]];
    await waitNodeSsh(cluster, n2, auth, 10 * 60_000);
    const r = await runOnce(localNodeTarget(cluster, n1, auth), `ip -brief addr show cluster0; ping -c1 -W5 ${n2.address}`);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`cluster0\\s+UP\\s+${n1.address.replace(/\./g, '\\.')}/24`));
    assert.match(r.stdout, /1 received/);
  });

  it('restores both nodes from one snapshot template; they share no identity with each other', async () => {
    assert.equal(cluster.boot.mode, 'snapshot', JSON.stringify(cluster.boot));
    assert.equal(cluster.boot.templates?.length, 1);
    const facts = await Promise.all(
      cluster.nodes.map(async (n) => {
        await waitNodeSsh(cluster, n, auth, 10 * 60_000);
        const r = await runOnce(
          localNodeTarget(cluster, n, auth),
          [
            'while [ ! -e /var/lib/cloud/instance/boot-finished ]; do sleep 0.5; done',
            'echo "machineId=$(cat /etc/machine-id)"',
            'echo "hostKey=$(sudo cut -d" " -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)"',
            'echo "macs=$(cat /sys/class/net/eth0/address) $(cat /sys/class/net/cluster0/address)"',
            'echo "random=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d " \\n")"',
            'echo "hostname=$(hostname)"',
            'echo "instanceId=$(cat /run/cloud-init/.instance-id)"',
            'echo "epoch=$(date +%s)"',
            'echo "reseeds=$(sudo dmesg | grep -c "crng reseeded due to virtual machine fork")"',
            'echo "journaled=$(sudo journalctl -b --no-pager -q -u flotilla-clone-point | grep -c Finished)"',
          ].join('; '),
        );
        assert.equal(r.code, 0, r.stdout + r.stderr);
        const v = Object.fromEntries(r.stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
        return { node: n, machineId: v.machineId!, hostKey: v.hostKey!, macs: v.macs!.split(' '), random: v.random!, hostname: v.hostname!, instanceId: v.instanceId!, epoch: Number(v.epoch), reseeds: Number(v.reseeds), journaled: Number(v.journaled) };
      }),
    );
    for (const f of facts) {
      const spec1 = spec.nodes.find((x) => x.name === f.node.name)!;
      // Its own MACs (not the template's), host key (from its own rendered cloud-config) and name.
      assert.deepEqual(f.macs, [spec1.primaryMac, spec1.clusterMac]);
      assert.equal(f.hostKey, f.node.hostPublicKey.split(' ').slice(0, 2).join(' '));
      assert.equal(f.hostname, f.node.name);
      // cloud-init ran this node's own seed: the instance ID its rendered meta-data names.
      assert.match(rendered.find((r) => r.node === f.node.name)!.metaData ?? '', new RegExp(`^instance-id: "${f.instanceId}"$`, "m"));
      // The machine ID the host handed this clone, which PID 1 and journald then use.
      assert.match(fs.readFileSync(path.join(f.node.dir, 'clone.conf'), 'utf8'), new RegExp(`^machine-id ${f.machineId}$`, 'm'));
      assert.equal(f.journaled, 1, 'the journal under the new machine ID holds the clone point');
      // The kernel reseeded its RNG when the VM generation ID changed; the clock is the host's.
      assert.equal(f.reseeds, 1);
      assert.ok(Math.abs(f.epoch - Date.now() / 1000) < 30, `clock ${f.epoch} vs host ${Date.now() / 1000}`);
    }
    const [a, b] = facts as [(typeof facts)[0], (typeof facts)[0]];
    for (const k of ['machineId', 'hostKey', 'random', 'hostname', 'instanceId'] as const) assert.notEqual(a[k], b[k], k);
    assert.notDeepEqual(a.macs, b.macs);
    log(`clones: ${facts.map((f) => `${f.node.name} machine-id ${f.machineId.slice(0, 8)} rng ${f.random.slice(0, 8)}`).join('; ')}`);
  });

  it('a template whose state file was changed is built again, never restored', async () => {
    const v = { cluster: cluster.name, node: spec.nodes[0]!, sshPort: 0, rendered: rendered[0]!, image, accel: accel.accel };
    const shape = nodeShape(v);
    const t = listTemplates(image).find((x) => x.key.startsWith(cluster.boot.templates![0]!)) as TemplateInfo;
    assert.ok(t, 'the cluster template is listed');
    assert.equal(await checkTemplate(t), undefined);
    // One flipped byte in the middle of the saved RAM.
    const fd = fs.openSync(t.state, 'r+');
    const at = Math.floor(t.stateBytes / 2);
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, at);
    fs.writeSync(fd, Buffer.from([byte[0]! ^ 0xff]), 0, 1, at);
    fs.closeSync(fd);
    assert.match((await checkTemplate(t))!, /state file .* does not match the sha256 recorded when it was saved/);
    const lines: BuildProgress[] = [];
    const again = await ensureTemplate(image, shape, (p) => lines.push(p));
    assert.ok(lines.some((p) => p.phase === 'start' && /is damaged \(its state file .* does not match the sha256 .*\): building it again/.test(p.detail ?? '')), JSON.stringify(lines));
    assert.ok(lines.some((p) => p.phase === 'done'), JSON.stringify(lines));
    assert.notEqual(again.stateSha256, t.stateSha256);
    assert.equal(await checkTemplate(again), undefined);
    log(`template rebuilt in ${again.buildSeconds} s: ${lines.at(-1)?.detail}`);
  });

  it('stopNode leaves alone a pidfile whose PID is not our QEMU', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-pid-'));
    try {
      const pidFile = path.join(dir, 'qemu.pid');
      fs.writeFileSync(pidFile, `${process.pid}\n`);
      assert.equal(await stopNode(pidFile), false);
      const qemuPidFile = cluster.nodes[1]!.pidFile;
      fs.writeFileSync(pidFile, `${cluster.nodes[1]!.pid}\n`);
      // The PID is a QEMU of ours, but not one started with this pidfile.
      assert.equal(await stopNode(pidFile), false);
      assert.ok(isOurQemu(cluster.nodes[1]!.pid, qemuPidFile));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
