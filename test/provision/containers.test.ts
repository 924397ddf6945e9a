/**
 * End to end, one local VM: a unit whose ExecStart is `podman run` of the node's local image
 * (localhost/busybox:latest, imported on demand from busybox-static: no registry) runs under
 * the systemd runner; its sidekick (MachineOf, BindsTo) announces it with `flotilla announce`
 * from the node's agent bundle, at the node's address and machine ID; the announced endpoint
 * answers; stopping the service stops the sidekick, which revokes the record. `down` at the end.
 * (The host-side CLI and the verify suite on announcements: test/discovery/.)
 * The node is examples/single-node.yaml as it is (renamed): right after `up` it is verified
 * (node, etcd, fleet, discovery suites), so that example is booted and verified here rather than
 * in a VM of its own (test/cli/examples.test.ts checks every example is covered somewhere).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadSpecFile } from '../../src/config/load';
import { endpointUrl } from '../../src/discovery/endpoint';
import { servicesPrefix } from '../../src/discovery/keys';
import { listServices } from '../../src/discovery/services';
import { LOCAL_CONTAINER_IMAGE } from '../../src/provision/image/recipe';
import { NodeConnection } from '../../src/ssh';
import { connectRegistry } from '../../src/cluster/registry-connection';
import { nodeSshTarget } from '../../src/cluster/store';
import { inventoryFromRecord } from '../../src/provision/local/inventory';
import { downLocal, upLocal } from '../../src/provision/local/up';
import { type ClusterRecord } from '../../src/cluster/store';
import { runVerify } from '../../src/verify/verify';
import { UnitsClient } from '../../src/units/client';
import { makeTempDir, removeTempDir } from '../fixtures/proc';
import { cli } from '../helpers/cli';

const NAME = 'ctr';
const EXAMPLE = path.join(__dirname, '..', '..', 'examples', 'single-node.yaml');

const WEB_UNIT = `[Unit]
Description=busybox httpd in a podman container
Requires=flotilla-container-images.service
After=flotilla-container-images.service

[Service]
ExecStartPre=-/usr/bin/podman rm -f %p
ExecStart=/usr/bin/podman run --rm --name %p ${LOCAL_CONTAINER_IMAGE} httpd -f -p 8080 -h /srv
ExecStop=/usr/bin/podman stop -t 5 %p
# systemd ends the cgroup after ExecStop, which can cut podman run's --rm cleanup short.
ExecStopPost=-/usr/bin/podman rm -f %p
`;

const ANNOUNCE_UNIT = `[Unit]
Description=announce web
BindsTo=web.service
After=web.service

[Service]
ExecStart=/usr/local/bin/flotilla announce web --port 8080 --protocol http --path /index.html --check-interval 5 --ttl 15

[X-Fleet]
MachineOf=web.service
`;

test('a podman unit runs from the local image under the systemd runner, is announced and verified, and withdrawn when stopped', {
  timeout: 30 * 60_000,
}, async () => {
  const dir = makeTempDir('flotilla-containers');
  // The example's agent runner is auto: systemd, since PID 1 on the node is systemd (the unit
  // states checked below are systemd's).
  const spec = { ...loadSpecFile(EXAMPLE), name: NAME };
  for (const [f, text] of [['web.service', WEB_UNIT], ['web-announce.service', ANNOUNCE_UNIT]] as const) fs.writeFileSync(path.join(dir, f), text);
  await downLocal(NAME); // a previous run that died mid-way
  let record: ClusterRecord | undefined;
  try {
    const tUp = Date.now();
    ({ record } = await upLocal({ spec }));
    const tVerify = Date.now();
    // examples/single-node.yaml verifies as `flotilla verify --cluster` would.
    const { report } = await runVerify({ inventory: inventoryFromRecord(record), spec });
    console.log(`# examples/single-node.yaml: up ${((tVerify - tUp) / 1000).toFixed(1)} s, verify ${((Date.now() - tVerify) / 1000).toFixed(1)} s (${report.summary.pass}/${report.summary.total} passed)`);
    const bad = report.results.filter((r) => r.status === 'fail' || r.status === 'error');
    assert.deepEqual(bad.map((r) => `${r.id}${r.node ? ` (${r.node})` : ''}: ${r.message}`), [], 'examples/single-node.yaml: failed checks');
    assert.equal(report.ok, true);
    const node = record.nodes[0]!;
    // One SSH connection for everything, with a handshake deadline for a host loaded with
    // other sessions' emulated VMs (the default 10 s is not always enough there).
    const ssh = new NodeConnection(nodeSshTarget(record, node), { readyTimeoutMs: 120_000, handshakeTimeoutMs: 90_000 });
    const conn = await connectRegistry(record, ssh);
    try {
      const units = new UnitsClient(conn.registry);
      await units.submit([path.join(dir, 'web.service'), path.join(dir, 'web-announce.service')]);
      // The service first: a sidekick started before its BindsTo= target's unit file is on the
      // machine would fail on the missing dependency (and the agent leaves failed units be).
      let t0 = Date.now();
      await units.setState(['web.service'], 'launched');
      await units.waitFor(['web.service'], (rs) => rs.some((r) => r.active === 'active'), 10 * 60_000);
      console.log(`# web.service (podman) active ${((Date.now() - t0) / 1000).toFixed(1)} s after launch`);
      t0 = Date.now();
      await units.setState(['web-announce.service'], 'launched');
      const rows = await units.waitFor(['web.service', 'web-announce.service'], (rs) => rs.filter((r) => r.active === 'active').length === 2, 10 * 60_000);
      const machineId = rows[0]!.machine!;
      assert.ok(rows.every((r) => r.machine === machineId));

      // Announced once the sidekick's first probe passes (httpd in the container answers),
      // under the node's address and machine ID (from its fleetd.json).
      const prefix = servicesPrefix(record.keyPrefix);
      let listing = await listServices(conn.registry.etcd, prefix, 'web');
      while (listing.instances.length === 0 && Date.now() - t0 < 10 * 60_000) {
        await new Promise((r) => setTimeout(r, 2000));
        listing = await listServices(conn.registry.etcd, prefix, 'web');
      }
      console.log(`# web announced ${((Date.now() - t0) / 1000).toFixed(1)} s after the sidekick was launched`);
      assert.deepEqual(listing.problems, []);
      assert.deepEqual(listing.instances.map((i) => [i.instance, endpointUrl(i)]), [[machineId, `http://${node.address}:8080/index.html`]]);

      // The container runs from the local image and answers at the announced endpoint.
      const ps = await ssh.exec("sudo podman ps --format '{{.Names}} {{.Image}} {{.Status}}'", { timeoutMs: 120_000 });
      assert.match(ps.stdout, new RegExp(`^web ${LOCAL_CONTAINER_IMAGE.replace(/[.]/g, '\\.')} Up`, 'm'), ps.stdout + ps.stderr);
      const images = await ssh.exec("sudo podman images --format '{{.Repository}}:{{.Tag}}'", { timeoutMs: 120_000 });
      assert.deepEqual(images.stdout.trim().split('\n'), [LOCAL_CONTAINER_IMAGE]);
      const page = await ssh.exec(`busybox wget -q -O - ${endpointUrl(listing.instances[0]!)}`, { timeoutMs: 60_000 });
      assert.equal(page.stdout, 'flotilla busybox container\n', page.stderr);
      const state = await ssh.exec('systemctl show -p ActiveState,SubState --value web.service web-announce.service flotilla-container-images.service', { timeoutMs: 60_000 });
      assert.deepEqual(state.stdout.trim().split('\n').filter(Boolean), ['active', 'running', 'active', 'running', 'active', 'exited']);

      // Stopping the service stops its sidekick (BindsTo): the record is revoked, the container gone.
      await units.setState(['web.service'], 'loaded');
      // Stopped means systemd finished the whole stop sequence, ExecStopPost included: under TCG
      // `deactivating` lasts seconds, and the container was seen listed while it did.
      await units.waitFor(['web.service', 'web-announce.service'], (rs) => rs.every((r) => r.active === 'inactive' || r.active === 'failed'), 10 * 60_000);
      assert.deepEqual((await listServices(conn.registry.etcd, prefix, 'web')).instances, []);
      const stopped = await ssh.exec('systemctl show -p ActiveState --value web.service', { timeoutMs: 60_000 });
      assert.match(stopped.stdout.trim(), /^(inactive|failed)$/);
      const after = await ssh.exec("sudo podman ps -a --format '{{.Names}}'", { timeoutMs: 120_000 });
      assert.equal(after.stdout.trim(), '');
      const journal = await ssh.exec('sudo journalctl -u web-announce.service -o cat --no-pager', { timeoutMs: 60_000 });
      assert.match(journal.stdout, /announced web\/[0-9a-f]+ http:\/\/[\d.]+:8080\/index\.html/);
      // systemd's own "Stopping ..." line may fall between the two (journal order, not ours).
      assert.match(journal.stdout, /SIGTERM: stopping\n(?:.*\n)*?.*withdrew web\//);
    } finally {
      await conn.close();
      await ssh.close();
    }
  } finally {
    const r = await cli('down', '--name', NAME);
    assert.equal(r.code, 0, r.stderr);
    removeTempDir(dir);
  }
});
