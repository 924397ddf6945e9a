/** Reporters (TAP, JUnit, JSON, human) and the boot-timeline SVG, parsed back. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { formatReport, tapReport, junitReport } from '../../src/verify/report';
import { renderBootTimeline } from '../../src/verify/report/timeline';
import { makeReport } from '../../src/verify/runner';
import type { CheckResult } from '../../src/verify/types';
import { findAll, parseXml } from './xml';

const HOSTILE = 'bad <tag> & "quotes" \'apos\' ]]> \x1b[31mred\x1b[0m nul\x00 lone\ud800 # not a directive\nsecond line';

function results(): CheckResult[] {
  const base = { attempts: 1, startedAt: '2026-01-01T00:00:00.000Z' };
  return [
    { ...base, id: 'node.hostname', suite: 'node', name: 'hostname is the node name', node: 'core1', status: 'pass', message: 'hostname core1', durationMs: 12 },
    { ...base, id: 'node.hostname', suite: 'node', name: 'hostname is the node name', node: 'core2', status: 'fail', message: HOSTILE, durationMs: 1500, attempts: 3 },
    { ...base, id: 'etcd.tls-host', suite: 'etcd', name: 'TLS enforced', status: 'skip', message: 'plain HTTP # cluster', durationMs: 0 },
    { ...base, id: 'etcd.members', suite: 'etcd', name: 'member list', status: 'error', message: 'etcd at https://x: dial failed', durationMs: 5000 },
    { ...base, id: 'custom.x', suite: 'custom', name: 'a & b', node: 'n<1>', status: 'pass', message: 'ok', durationMs: 2 },
  ];
}

test('TAP 13: version, plan, counts, SKIP directive, YAML diagnostics, # escaped in descriptions', () => {
  const report = makeReport('demo', ['node', 'etcd'], results(), Date.now() - 100);
  const tap = tapReport(report);
  const lines = tap.split('\n');
  assert.equal(lines[0], 'TAP version 13');
  assert.equal(lines[1], '1..5');
  const points = lines.filter((l) => /^(not )?ok \d+ /.test(l));
  assert.equal(points.length, 5);
  assert.deepEqual(points.map((l) => Number(/ok (\d+)/.exec(l)![1])), [1, 2, 3, 4, 5]);
  assert.equal(points.filter((l) => l.startsWith('ok ')).length, 3);
  assert.equal(points.filter((l) => l.startsWith('not ok ')).length, 2);
  assert.match(points[2]!, /^ok 3 - etcd: TLS enforced # SKIP plain HTTP # cluster$/);
  assert.match(points[0]!, /^ok 1 - node: hostname is the node name \[core1\]$/);
  // The failure's diagnostics are a YAML block whose message is the exact text (JSON-quoted).
  const start = lines.indexOf('  ---', lines.indexOf(points[1]!));
  const block = lines.slice(start + 1, lines.indexOf('  ...', start));
  const msg = block.find((l) => l.startsWith('  message: '))!.slice('  message: '.length);
  assert.equal(JSON.parse(msg), HOSTILE);
  assert.ok(block.includes('  attempts: 3'));
  assert.ok(lines.includes('# fail 1') && lines.includes('# error 1') && lines.includes('# skip 1') && lines.includes('# pass 2'));
});

test('JUnit: well-formed despite hostile text; a testsuite per suite, a testcase per check with node, failures, seconds', () => {
  const report = makeReport('demo', ['node', 'etcd', 'custom'], results(), Date.now() - 100);
  const xml = junitReport(report);
  const root = parseXml(xml);
  assert.equal(root.name, 'testsuites');
  assert.equal(root.attrs.tests, '5');
  assert.equal(root.attrs.failures, '1');
  assert.equal(root.attrs.errors, '1');
  assert.equal(root.attrs.skipped, '1');
  const suites = findAll(root, 'testsuite');
  assert.deepEqual(suites.map((s) => s.attrs.name), ['node', 'etcd', 'custom']);
  assert.deepEqual(suites.map((s) => s.attrs.tests), ['2', '2', '1']);
  const cases = findAll(root, 'testcase');
  assert.deepEqual(cases.map((c) => c.attrs.name), ['hostname is the node name [core1]', 'hostname is the node name [core2]', 'TLS enforced', 'member list', 'a & b [n<1>]']);
  assert.equal(cases[1]!.attrs.time, '1.500');
  assert.equal(cases[0]!.attrs.classname, 'flotilla.demo.node');
  const failure = findAll(cases[1]!, 'failure')[0]!;
  // Text survives except what XML cannot hold, which is shown escaped.
  assert.ok(failure.text.includes('bad <tag> & "quotes" \'apos\' ]]> \\x1b[31mred\\x1b[0m nul\\x00 lone\\ud800'), failure.text);
  assert.ok(failure.text.includes('second line'));
  assert.equal(failure.attrs.message, 'bad <tag> & "quotes" \'apos\' ]]> \\x1b[31mred\\x1b[0m nul\\x00 lone\\ud800 # not a directive');
  assert.equal(findAll(cases[2]!, 'skipped').length, 1);
  assert.equal(findAll(cases[3]!, 'error').length, 1);
  // The checker itself rejects what the escaping prevents.
  assert.throws(() => parseXml('<a b="x<y"/>'));
  assert.throws(() => parseXml('<a>\x1b</a>'));
  assert.throws(() => parseXml('<a><b></a></b>'));
  assert.throws(() => parseXml('<a>&nbsp;</a>'));
});

test('JSON and human reports; ok only when nothing failed or errored', () => {
  const report = makeReport('demo', ['node'], results(), Date.now() - 100);
  const back = JSON.parse(formatReport(report, 'json')) as typeof report;
  assert.equal(back.ok, false);
  assert.deepEqual(back.summary, { total: 5, pass: 2, fail: 1, skip: 1, error: 1 });
  assert.equal(back.results[1]!.message, HOSTILE, 'JSON keeps every character (lone surrogates as \\u escapes)');
  const human = formatReport(report, 'human');
  assert.match(human, /^PASS node: hostname is the node name \[core1\] \(12 ms\)$/m);
  assert.match(human, /^FAIL node: hostname is the node name \[core2\] \(1\.50 s, 3 tries\)$/m);
  assert.match(human, /^FAILED demo: 2 passed, 1 failed, 1 errors, 1 skipped in /m);
  assert.ok(!human.includes('\x1b[32m'), 'no colours when not a TTY');
  const good = makeReport('demo', ['node'], results().filter((r) => r.status === 'pass' || r.status === 'skip'), Date.now());
  assert.equal(good.ok, true);
});

test('boot timeline SVG: well-formed, one bar per reached phase with labels, missing phases left out', () => {
  const svg = renderBootTimeline(
    [
      { node: 'core1', marks: { launch: 0, kernel: 1200, ssh: 8000, firstBoot: 15000, etcdHealthy: 19000, agentRegistered: 21000 } },
      { node: 'core<2>&', marks: { launch: 0, kernel: 1500, ssh: 9500 } },
    ],
    { title: 'demo "boot"' },
  );
  const root = parseXml(svg);
  assert.equal(root.name, 'svg');
  const nodes = findAll(root, 'g').filter((g) => g.attrs.class === 'node');
  assert.deepEqual(nodes.map((n) => n.attrs['data-node']), ['core1', 'core<2>&']);
  const bars = (g: (typeof nodes)[number]) => findAll(g, 'rect').filter((r) => r.attrs.class === 'phase');
  assert.deepEqual(bars(nodes[0]!).map((r) => r.attrs['data-phase']), ['kernel', 'ssh', 'firstBoot', 'etcdHealthy', 'agentRegistered']);
  assert.deepEqual(bars(nodes[1]!).map((r) => r.attrs['data-phase']), ['kernel', 'ssh']);
  // Bars are contiguous and proportional: each starts where the previous ended.
  const b = bars(nodes[0]!);
  for (let i = 1; i < b.length; i++) assert.equal(Number(b[i]!.attrs.x), Number(b[i - 1]!.attrs.x) + Number(b[i - 1]!.attrs.width));
  const w = (r: (typeof b)[number]) => Number(r.attrs.width);
  assert.ok(Math.abs(w(b[1]!) / w(b[0]!) - 6800 / 1200) < 0.05, 'widths are proportional to durations');
  const labels = findAll(nodes[0]!, 'text').map((t) => t.text);
  assert.ok(labels.includes('core1'));
  assert.ok(labels.includes('cloud-init done 15 s'), labels.join('|'));
  assert.ok(labels.includes('agent registered 21 s') && labels.includes('kernel 1.2 s'), labels.join('|'));
  assert.ok(findAll(nodes[0]!, 'title').some((t) => t.text.includes('SSH → cloud-init done: 7.0 s')));
  assert.equal(findAll(root, 'text')[0]!.text, 'demo "boot"');
});
