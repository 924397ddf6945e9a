/**
 * `etcdJoin` on a resolved node (set by `flotilla replace`): the node's etcd joins a running
 * cluster. Only that node's etcd.env changes — ETCD_INITIAL_CLUSTER becomes the given
 * membership and ETCD_INITIAL_CLUSTER_STATE `existing` — in both formats; every other byte of
 * every document is what a new cluster gets. Bad memberships are refused naming the field.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { loadSpecObject } from '../../src/config/load';
import { etcdEnvironment, etcdPeerUrl } from '../../src/config/node-files';
import { renderNode } from '../../src/config/render';
import { ensureSecrets } from '../../src/config/secrets';
import type { ConfigFormat, EtcdJoin, ResolvedSpec } from '../../src/config/spec';
import { FlotillaError } from '../../src/errors';
import { makeSpec, nodes } from '../helpers/spec';

const spec: ResolvedSpec = loadSpecObject(makeSpec({ name: 'join', nodes: nodes(4, (i) => ({ address: `10.99.0.${21 + i}` })), etcd: { members: ['node1', 'node2', 'node3'] } }));
const secrets = ensureSecrets(spec);
const join: EtcdJoin = {
  state: 'existing',
  members: [
    { name: 'node1', peerUrl: 'https://10.99.0.21:2380' },
    { name: 'node3', peerUrl: 'https://10.99.0.23:2380' },
    { name: 'node2', peerUrl: 'https://10.99.0.22:2380' },
  ],
};
const withJoin = (i: number, j: EtcdJoin = join): ResolvedSpec['nodes'][number] => ({ ...spec.nodes[i]!, etcdJoin: j });

/** The etcd.env text inside a rendered document (Ignition data URL or cloud-config write_files). */
function etcdEnvText(userData: string, format: ConfigFormat): string {
  if (format === 'ignition') {
    const file = (JSON.parse(userData) as { storage: { files: Array<{ path: string; contents: { source: string } }> } }).storage.files.find((f) => f.path === '/etc/flotilla/etcd.env')!;
    const src = file.contents.source;
    const data = src.slice(src.indexOf(',') + 1);
    return src.includes(';base64,') ? Buffer.from(data, 'base64').toString('utf8') : decodeURIComponent(data);
  }
  const m = /- path: "?\/etc\/flotilla\/etcd\.env"?[\s\S]*?content: \|-?\n((?: {6}.*\n)+)/.exec(userData);
  assert.ok(m, 'etcd.env in write_files');
  return m[1]!.replace(/^ {6}/gm, '');
}

/** The document's data with etcd.env's contents set to `env`. */
function withEnv(userData: string, format: ConfigFormat, env: string): unknown {
  if (format === 'ignition') {
    const doc = JSON.parse(userData) as { storage: { files: Array<{ path: string; contents: { source: string } }> } };
    doc.storage.files.find((f) => f.path === '/etc/flotilla/etcd.env')!.contents.source = env;
    return doc;
  }
  const doc = parseYaml(userData) as { write_files: Array<{ path: string; content: string }> };
  doc.write_files.find((f) => f.path === '/etc/flotilla/etcd.env')!.content = env;
  return doc;
}

describe('etcdJoin rendering', () => {
  for (const format of ['cloud-config', 'ignition'] as const) {
    it(`changes only the two initial-cluster lines of that node's etcd.env (${format})`, () => {
      const plain = renderNode(spec, spec.nodes[1]!, secrets, format);
      const joined = renderNode(spec, withJoin(1), secrets, format);
      const before = etcdEnvText(plain.userData, format);
      const after = etcdEnvText(joined.userData, format);
      assert.match(before, /^ETCD_INITIAL_CLUSTER_STATE=new$/m);
      assert.match(after, /^ETCD_INITIAL_CLUSTER_STATE=existing$/m);
      assert.match(after, /^ETCD_INITIAL_CLUSTER=node1=https:\/\/10\.99\.0\.21:2380,node3=https:\/\/10\.99\.0\.23:2380,node2=https:\/\/10\.99\.0\.22:2380$/m);
      const strip = (t: string) => t.split('\n').filter((l) => !l.startsWith('ETCD_INITIAL_CLUSTER=') && !l.startsWith('ETCD_INITIAL_CLUSTER_STATE=')).join('\n');
      assert.equal(strip(after), strip(before), 'every other etcd variable is the same');
      // Outside etcd.env the documents carry the same data.
      assert.deepEqual(withEnv(joined.userData, format, before), withEnv(plain.userData, format, before));
      assert.equal(joined.networkConfig, plain.networkConfig);
      assert.equal(joined.metaData, plain.metaData);
      assert.equal(joined.hostPublicKey, plain.hostPublicKey);
    });
  }

  it('leaves every node without etcdJoin byte-identical to a new cluster', () => {
    for (const format of ['cloud-config', 'ignition'] as const) {
      for (const n of spec.nodes) {
        const fresh = loadSpecObject(makeSpec({ name: 'join', nodes: nodes(4, (i) => ({ address: `10.99.0.${21 + i}` })), etcd: { members: ['node1', 'node2', 'node3'] } }));
        assert.equal(renderNode(spec, n, secrets, format).userData, renderNode(fresh, fresh.nodes.find((x) => x.name === n.name)!, secrets, format).userData);
      }
    }
  });

  it('keeps ETCD_INITIAL_CLUSTER_STATE=new and the static membership without etcdJoin', () => {
    const env = etcdEnvironment(spec, spec.nodes[0]!);
    assert.equal(env.ETCD_INITIAL_CLUSTER_STATE, 'new');
    assert.equal(env.ETCD_INITIAL_CLUSTER, 'node1=https://10.99.0.21:2380,node2=https://10.99.0.22:2380,node3=https://10.99.0.23:2380');
    assert.equal(etcdPeerUrl(spec, spec.nodes[2]!), 'https://10.99.0.23:2380');
  });

  const refused = (fn: () => unknown, field: RegExp, why: RegExp): void => {
    assert.throws(fn, (err: unknown) => {
      assert.ok(FlotillaError.is(err));
      assert.equal(err.code, 'invalid-input');
      assert.match(err.problems[0]!.path, field);
      assert.match(err.message, why);
      return true;
    });
  };

  it('refuses a membership without the node, with it under another URL, or with it twice', () => {
    const others = join.members.filter((m) => m.name !== 'node2');
    refused(() => etcdEnvironment(spec, withJoin(1, { state: 'existing', members: others })), /^nodes\[1\]\.etcdJoin\.members$/, /must list node2 once with its peer URL https:\/\/10\.99\.0\.22:2380/);
    refused(() => etcdEnvironment(spec, withJoin(1, { state: 'existing', members: [...others, { name: 'node2', peerUrl: 'https://10.99.0.99:2380' }] })), /etcdJoin\.members/, /must list node2/);
    refused(() => etcdEnvironment(spec, withJoin(1, { state: 'existing', members: [...join.members, { name: 'node2', peerUrl: 'https://10.99.0.22:2380' }] })), /etcdJoin\.members/, /once/);
  });

  it('refuses entries that would break the environment file', () => {
    const bad = { state: 'existing' as const, members: [...join.members, { name: 'x\nETCD_FOO=1', peerUrl: 'https://10.99.0.30:2380' }] };
    refused(() => etcdEnvironment(spec, withJoin(1, bad)), /etcdJoin\.members/, /not a member name and peer URL/);
    const badUrl = { state: 'existing' as const, members: [...join.members, { name: 'node9', peerUrl: 'https://10.99.0.30:2380,evil=http://x' }] };
    refused(() => etcdEnvironment(spec, withJoin(1, badUrl)), /etcdJoin\.members/, /not a member name and peer URL/);
  });

  it('refuses etcdJoin on a node that runs no etcd member', () => {
    refused(() => renderNode(spec, withJoin(3), secrets, 'ignition'), /^nodes\[3\]\.etcdJoin$/, /node4 is not an etcd member/);
  });
});
