/** The announcement key layout and value schema (pure). */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { checkEndpoint, decodeEndpoint, encodeEndpoint, endpointUrl, parseAnnouncements } from '../../src/discovery/endpoint';
import { instanceKey, parseInstanceKey, servicesPrefix } from '../../src/discovery/keys';
import { FlotillaError } from '../../src/errors';

const P = '/flotilla/demo/services/';

test('key layout: <registry prefix>services/<service>/<instance>, parsed back; bad names refused', () => {
  assert.equal(servicesPrefix('/flotilla/demo/'), P);
  assert.equal(servicesPrefix('/custom'), '/custom/services/');
  assert.equal(instanceKey(P, 'web', 'n1'), `${P}web/n1`);
  assert.deepEqual(parseInstanceKey(P, `${P}web@1.service/3f9c:a_b-c`), { service: 'web@1.service', instance: '3f9c:a_b-c' });
  for (const bad of [`${P}web`, `${P}web/n1/extra`, `${P}/n1`, `${P}web/`, `${P}we b/n1`, '/other/web/n1']) {
    assert.ok('problem' in parseInstanceKey(P, bad), bad);
  }
  assert.throws(() => instanceKey(P, 'web/x', 'n1'), (e: unknown) => FlotillaError.is(e) && e.code === 'invalid-input' && /service: "web\/x" is not a name/.test(e.message));
  assert.throws(() => instanceKey(P, 'web', '..'), /instance: "\.\." is not a name/);
});

test('values: defaults filled in, tcp has no path, encode/decode round trip', () => {
  const tcp = checkEndpoint({ host: '10.99.0.12', port: 5432 }, 'x');
  assert.deepEqual(tcp, { host: '10.99.0.12', port: 5432, protocol: 'tcp', path: '/' });
  assert.equal(encodeEndpoint(tcp), '{"host":"10.99.0.12","port":5432,"protocol":"tcp"}');
  const web = checkEndpoint({ host: 'web-1.internal', port: 8080, protocol: 'http', path: '/health' }, 'x');
  assert.equal(encodeEndpoint(web), '{"host":"web-1.internal","port":8080,"protocol":"http","path":"/health"}');
  assert.deepEqual(decodeEndpoint(encodeEndpoint(web)), { endpoint: web });
  assert.deepEqual(decodeEndpoint('{"host":"::1","port":80,"protocol":"http"}'), { endpoint: { host: '::1', port: 80, protocol: 'http', path: '/' } });
  assert.equal(endpointUrl({ host: '::1', port: 80, protocol: 'http', path: '/' }), 'http://[::1]:80/');
  assert.equal(endpointUrl(tcp), 'tcp://10.99.0.12:5432');
});

test('values: every bad field named, with what was given', () => {
  const r = decodeEndpoint('{"host":"a b","port":70000,"protocol":"udp","path":"health","weight":3}');
  assert.ok('problems' in r);
  assert.deepEqual(r.problems.map((p) => p.slice(0, p.indexOf(':'))).sort(), ['host', 'path', 'port', 'protocol', 'weight']);
  assert.match(r.problems.join('\n'), /weight: unknown field \(fields: host, port, protocol, path\)/);
  assert.match(r.problems.join('\n'), /port: want a whole number from 1 to 65535, got 70000/);
  assert.match(r.problems.join('\n'), /protocol: want tcp or http, got "udp"/);
  assert.deepEqual(decodeEndpoint('{"host":"h","port":1,"path":"/x"}'), { problems: ['path: only with protocol http'] });
  assert.deepEqual(decodeEndpoint('{"host":"h","port":"80"}'), { problems: ['port: want a whole number from 1 to 65535, got "80"'] });
  assert.deepEqual(decodeEndpoint('[1]'), { problems: ['value is not a JSON object: [1]'] });
  assert.deepEqual(decodeEndpoint('not json'), { problems: ['value is not a JSON object: not json'] });
  assert.throws(() => checkEndpoint({ host: '', port: 0 }, 'flotilla announce'), (e: unknown) => FlotillaError.is(e) && e.code === 'invalid-input' && /^flotilla announce: host: .*; port: /.test(e.message));
});

test('parseAnnouncements: instances sorted with lease and revision, malformed entries as problems naming the key', () => {
  const { instances, problems } = parseAnnouncements(P, [
    { key: `${P}web/n2`, value: '{"host":"10.0.0.2","port":80,"protocol":"http"}', lease: '77', modRevision: '9' },
    { key: `${P}db/n1`, value: '{"host":"10.0.0.1","port":5432}' },
    { key: `${P}web/n1`, value: '{"host":"10.0.0.1","port":80,"protocol":"http","path":"/h"}' },
    { key: `${P}junk/n1`, value: 'not json' },
    { key: `${P}toodeep/a/b`, value: '{}' },
  ]);
  assert.deepEqual(instances.map((i) => `${i.service}/${i.instance} ${endpointUrl(i)} ${i.lease}`), ['db/n1 tcp://10.0.0.1:5432 0', 'web/n1 http://10.0.0.1:80/h 0', 'web/n2 http://10.0.0.2:80/ 77']);
  assert.equal(instances[2]!.modRevision, '9');
  assert.deepEqual(problems, [`${P}junk/n1: value is not a JSON object: not json`, `${P}toodeep/a/b: not <prefix><service>/<instance> (names: letters, digits, _.@:-)`]);
  // The plain key → value form (what the verify suite reads).
  assert.equal(parseAnnouncements(P, { [`${P}web/n1`]: '{"host":"h","port":1}' }).instances[0]!.host, 'h');
});
