import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { FlotillaError } from '../../src/errors';
import { parseUnitFile, serializeUnitFile } from '../../src/units/unit-file';
import {
  checkMachineOfCycles,
  checkXFleet,
  conflictsWith,
  emptyXFleetOptions,
  globMatch,
  globProblem,
  instantiate,
  matchesMetadata,
  parseXFleet,
  type XFleetOptions,
} from '../../src/units/xfleet';

function xfleet(body: string, name = 'web.service'): XFleetOptions {
  return parseXFleet(parseUnitFile(`[Service]\nExecStart=/bin/true\n\n[X-Fleet]\n${body}\n`, name));
}

/** The problems parseXFleet reports, as `line: message`. */
function xfleetProblems(body: string, name = 'web.service'): string[] {
  try {
    xfleet(body, name);
  } catch (err) {
    assert.ok(FlotillaError.is(err));
    assert.equal(err.code, 'invalid-input');
    for (const p of err.problems) assert.equal(p.file, name);
    return err.problems.map((p) => `${p.line}: ${p.message}`);
  }
  return [];
}

function withOptions(name: string, o: Partial<XFleetOptions>): { name: string; options: XFleetOptions } {
  return { name, options: { ...emptyXFleetOptions(), ...o } };
}

test('all options with fleet semantics', () => {
  const o = xfleet(
    [
      'MachineID=0123456789abcdef0123456789abcdef',
      'MachineOf=db.service',
      'MachineMetadata=region=us-east-1',
      'MachineMetadata="region=us-west-1" "diskType=SSD"',
      'Conflicts=web*.service',
      'Conflicts=other.service "api@*.service"',
    ].join('\n'),
  );
  assert.equal(o.machineId, '0123456789abcdef0123456789abcdef');
  assert.deepEqual(o.machineOf, ['db.service']);
  assert.deepEqual(o.machineMetadata, [
    { key: 'region', values: ['us-east-1', 'us-west-1'] },
    { key: 'diskType', values: ['SSD'] },
  ]);
  assert.deepEqual(o.conflicts, ['web*.service', 'other.service', 'api@*.service']);
  assert.equal(o.global, false);
  assert.deepEqual(o.replaces, []);
  assert.deepEqual(o.lines, { MachineID: 5, MachineOf: 6, MachineMetadata: 7, Conflicts: 9 });
});

test('legacy X-Condition* and X-Conflicts names are aliases', () => {
  const o = xfleet(
    [
      'X-ConditionMachineID=abc',
      'X-ConditionMachineOf=db.service',
      'X-ConditionMachineMetadata=role=web',
      'X-Conflicts=web@*.service',
    ].join('\n'),
  );
  assert.equal(o.machineId, 'abc');
  assert.deepEqual(o.machineOf, ['db.service']);
  assert.deepEqual(o.machineMetadata, [{ key: 'role', values: ['web'] }]);
  assert.deepEqual(o.conflicts, ['web@*.service']);
});

test('Global takes systemd booleans; only MachineMetadata and Conflicts may accompany it', () => {
  for (const t of ['true', 'yes', '1', 'on', 'TRUE', 'y', 't']) assert.equal(xfleet(`Global=${t}`).global, true, t);
  for (const f of ['false', 'no', '0', 'off', 'N']) assert.equal(xfleet(`Global=${f}`).global, false, f);
  const ok = xfleet('Global=true\nMachineMetadata=role=edge\nConflicts=x*.service');
  assert.equal(ok.global, true);
  assert.deepEqual(xfleetProblems('Global=maybe'), ['5: "maybe" is not a boolean (use true or false)']);
  const problems = xfleetProblems('MachineID=abc\nGlobal=true\nMachineOf=db.service\nReplaces=old.service');
  assert.equal(problems.length, 3);
  assert.match(problems[0]!, /^5: MachineID cannot be combined with Global=true/);
  assert.match(problems[1]!, /^7: MachineOf cannot be combined with Global=true/);
  assert.match(problems[2]!, /^8: Replaces cannot be combined with Global=true/);
});

test('Replaces cannot be combined with Conflicts', () => {
  assert.deepEqual(xfleet('Replaces=old.service').replaces, ['old.service']);
  const problems = xfleetProblems('Conflicts=x*.service\nReplaces=old.service');
  assert.equal(problems.length, 1);
  assert.match(problems[0]!, /^6: Replaces cannot be combined with Conflicts/);
});

function xfleetWarnings(body: string, name = 'web.service'): string[] {
  const unit = parseUnitFile(`[Service]\nExecStart=/bin/true\n\n[X-Fleet]\n${body}\n`, name);
  return checkXFleet(unit).warnings.map((w) => `${w.line}: ${w.message}`);
}

test('unknown keys are ignored with a warning naming the nearest known key; X-Flotilla* keys are kept raw', () => {
  assert.deepEqual(xfleetProblems('MachineMetdata=a=b\nmachineof=db.service\nFrobnicate=1'), []);
  assert.deepEqual(xfleetWarnings('MachineMetdata=a=b\nmachineof=db.service\nFrobnicate=1\nAfter=x.service'), [
    '5: unknown [X-Fleet] key MachineMetdata (did you mean MachineMetadata?); it is ignored, so it does not constrain placement',
    '6: unknown [X-Fleet] key machineof (did you mean MachineOf?); it is ignored, so it does not constrain placement',
    '7: unknown [X-Fleet] key Frobnicate; it is ignored, so it does not constrain placement',
    '8: unknown [X-Fleet] key After (did you mean After in [Unit]?); it is ignored, so it does not constrain placement',
  ]);
  assert.deepEqual(xfleet('MachineMetdata=a=b').machineMetadata, []);
  assert.match(xfleetWarnings('X-ConditionMachineBootID=abc')[0]!, /boot IDs change on every boot/);
  const o = xfleet('X-Flotilla-Weight=3\nX-Flotilla-Rollout="max 1" %n');
  assert.deepEqual(o.extensions, [
    { key: 'X-Flotilla-Weight', value: '3', line: 5 },
    { key: 'X-Flotilla-Rollout', value: '"max 1" %n', line: 6 },
  ]);
});

test('warnings: what fleet accepted but did not do as the author hoped, each at its line', () => {
  // fleet expanded no environment variable in [X-Fleet]: the text is matched literally.
  assert.deepEqual(xfleetWarnings('MachineOf=${APP}.service\nConflicts=$NAME*.service\nMachineMetadata=region=${REGION}'), [
    '5: ${APP} is not expanded: fleet never read environment variables in [X-Fleet], so it is matched as the literal text "${APP}"',
    '6: $NAME is not expanded: fleet never read environment variables in [X-Fleet], so it is matched as the literal text "$NAME"',
    '7: ${REGION} is not expanded: fleet never read environment variables in [X-Fleet], so it is matched as the literal text "${REGION}"',
  ]);
  assert.deepEqual(xfleet('MachineOf=${APP}.service').machineOf, ['${APP}.service']);
  // Specifiers fleet did not expand stay as written.
  assert.match(xfleetWarnings('MachineMetadata=host=%H')[0]!, /^5: %H is not expanded in \[X-Fleet\]/);
  assert.deepEqual(xfleet('MachineMetadata=host=%H').machineMetadata, [{ key: 'host', values: ['%H'] }]);
  // Deprecated spellings are read, and named.
  assert.deepEqual(xfleetWarnings('X-ConditionMachineOf=db.service'), ["5: X-ConditionMachineOf is fleet's deprecated spelling of MachineOf; it is read as MachineOf"]);
  // fleet's options outside [X-Fleet], and a misspelt section, are ignored by fleet and systemd alike.
  const unit = parseUnitFile('[Unit]\nMachineOf=db.service\nConflicts=x.service\n[Service]\nExecStart=/bin/true\nGlobal=true\n[X-fleet]\nMachineID=abc\n', 'web.service');
  assert.deepEqual(checkXFleet(unit).warnings.map((w) => `${w.line}: ${w.message}`), [
    '2: MachineOf is an [X-Fleet] option; in [Unit] neither fleet nor systemd reads it, so it does not constrain placement',
    '6: Global is an [X-Fleet] option; in [Service] neither fleet nor systemd reads it, so it does not constrain placement',
    '7: section [X-fleet] is not [X-Fleet] (section names are case-sensitive), so its options are ignored',
  ]);
  assert.deepEqual(checkXFleet(unit).problems, []);
  // A clean unit has none.
  assert.deepEqual(xfleetWarnings('MachineOf=db.service\nConflicts=web@*.service\nMachineMetadata=role=web'), []);
});

test('invalid values are reported with their lines, all at once', () => {
  const problems = xfleetProblems(
    [
      'MachineMetadata=region',
      'MachineMetadata==x region=',
      'Conflicts=[a-',
      'MachineOf=not a unit',
      'MachineOf=web.service',
      'MachineID=a b',
      'MachineID=c',
      'MachineID=d',
      'Conflicts="unbalanced',
      'MachineOf=%H.service',
    ].join('\n'),
  );
  assert.deepEqual(
    problems.map((p) => p.split(':')[0]),
    ['5', '6', '6', '7', '8', '8', '8', '9', '10', '12', '13', '14'],
  );
  assert.match(problems[0]!, /"region" is not key=value/);
  assert.match(problems[3]!, /bad glob/);
  assert.match(problems[7]!, /names the unit itself/);
  assert.match(problems[9]!, /MachineID d contradicts MachineID c on line 11/);
  assert.match(problems[10]!, /unbalanced double quote/);
  assert.match(problems[11]!, /invalid unit name "%H\.service"/);
});

test('an empty assignment resets the option', () => {
  const o = xfleet('Conflicts=a*.service\nConflicts=\nConflicts=b*.service\nMachineMetadata=a=1\nMachineMetadata=\nGlobal=true\nGlobal=');
  assert.deepEqual(o.conflicts, ['b*.service']);
  assert.deepEqual(o.machineMetadata, []);
  assert.equal(o.global, false);
});

test('templates: instantiate renames; [X-Fleet] specifiers expand from the instance name', () => {
  const template = parseUnitFile(
    [
      '[Service]',
      'ExecStart=/bin/echo %i',
      '[X-Fleet]',
      'Conflicts=%p@*.%i',
      'MachineOf=%p-sidekick@%i.service',
      'MachineMetadata=unit=%n stem=%N pct=100%%',
    ].join('\n'),
    'web@.service',
  );
  for (const arg of ['7', 'web@7.service']) {
    const inst = instantiate(template, arg);
    assert.equal(inst.name, 'web@7.service');
    assert.equal(serializeUnitFile(inst), serializeUnitFile(template), 'the text is the template text');
    const o = parseXFleet(inst);
    assert.deepEqual(o.conflicts, ['web@*.7']);
    assert.deepEqual(o.machineOf, ['web-sidekick@7.service']);
    assert.deepEqual(o.machineMetadata, [
      { key: 'unit', values: ['web@7.service'] },
      { key: 'stem', values: ['web@7'] },
      { key: 'pct', values: ['100%'] },
    ]);
  }
  assert.throws(() => instantiate(parseUnitFile('', 'web.service'), '1'), /not a template/);
  assert.throws(() => instantiate(template, 'a b'), /invalid unit name/);
  assert.throws(() => instantiate(template, ''), /not an instance/);
  // The template itself is checked as a stand-in instance, so `%i` is never empty.
  assert.deepEqual(parseXFleet(template).machineOf, ['web-sidekick@instance.service']);
});

test('templates whose MachineMetadata, MachineID or Conflicts use %i are accepted (fleet\'s own functional tests had them)', () => {
  for (const xfleet of [
    ['MachineMetadata=hostname=%i'],
    ['MachineMetadata="role=master" "masterid=%i"'],
    ['MachineID=%i'],
    ['Conflicts=%p@%i.service'],
  ]) {
    const template = parseUnitFile(['[Service]', 'ExecStart=/bin/true', '[X-Fleet]', ...xfleet].join('\n'), 'kube@.service');
    assert.deepEqual(checkXFleet(template).problems, [], xfleet.join());
  }
  const inst = parseXFleet(instantiate(parseUnitFile('[X-Fleet]\nMachineMetadata="role=master" "masterid=%i"\n', 'kube@.service'), '3'));
  assert.deepEqual(inst.machineMetadata, [
    { key: 'role', values: ['master'] },
    { key: 'masterid', values: ['3'] },
  ]);
  // A template that names its own instance is still refused.
  assert.match(checkXFleet(parseUnitFile('[X-Fleet]\nMachineOf=%n\n', 'web@.service')).problems[0]?.message ?? '', /names the unit itself/);
});

test('globMatch follows Go path.Match', () => {
  const yes: Array<[string, string]> = [
    ['abc', 'abc'],
    ['*', 'abc'],
    ['*c', 'abc'],
    ['a*', 'a'],
    ['a*/b', 'abc/b'],
    ['a?c', 'abc'],
    ['[abc]x', 'bx'],
    ['[a-c]x', 'cx'],
    ['[^a-c]x', 'dx'],
    ['a\\*b', 'a*b'],
    ['[\\]a]', ']'],
    ['[\\-]', '-'],
    ['web@*.service', 'web@12.service'],
    ['*.service', 'x.service'],
    ['é?', 'éü'],
    ['[x-x]', 'x'],
  ];
  const no: Array<[string, string]> = [
    ['abc', 'abd'],
    ['a*', 'ba'],
    ['*', 'a/b'],
    ['a?b', 'a/b'],
    ['[^a-c]x', 'bx'],
    ['[!a]', 'b'],
    ['a*b', 'a/b'],
    ['web@*.service', 'web.service'],
    ['[z-a]', 'm'],
  ];
  for (const [p, s] of yes) assert.equal(globMatch(p, s), true, `${p} ~ ${s}`);
  for (const [p, s] of no) assert.equal(globMatch(p, s), false, `${p} !~ ${s}`);
  for (const bad of ['[', '[]', '[^]', 'a\\', '[a-', '[-a]', '[a-]', '[]a]', '[a']) {
    assert.ok(globProblem(bad), bad);
    assert.throws(() => globMatch(bad, 'x'), (e: unknown) => FlotillaError.is(e) && e.code === 'invalid-input', bad);
  }
});

test('globMatch agrees with a regular expression built from the same glob (property)', () => {
  const atom = fc.oneof(
    fc.constantFrom('a', 'b', '.', '@', '-'),
    fc.constant('*'),
    fc.constant('?'),
    fc.constantFrom('[ab]', '[^a]', '[a-c]', '\\*', '\\.'),
  );
  const toRegex = (atoms: string[]): RegExp =>
    new RegExp(
      `^${atoms
        .map((a) => {
          if (a === '*') return '[^/]*';
          if (a === '?') return '[^/]';
          if (a.startsWith('[')) return a;
          if (a.startsWith('\\')) return `\\${a[1]}`;
          return a === '.' ? '\\.' : a;
        })
        .join('')}$`,
      'u',
    );
  fc.assert(
    fc.property(fc.array(atom, { maxLength: 8 }), fc.string({ unit: fc.constantFrom('a', 'b', 'c', '.', '@', '-', '*', '/'), maxLength: 10 }), (atoms, name) => {
      assert.equal(globMatch(atoms.join(''), name), toRegex(atoms).test(name), `${atoms.join('')} vs ${name}`);
    }),
    { numRuns: 2000 },
  );
});

test('matchesMetadata: different keys AND, values of one key OR', () => {
  const o = xfleet('MachineMetadata=region=us-east-1\nMachineMetadata=region=us-west-1\nMachineMetadata=disk=ssd');
  assert.equal(matchesMetadata(o, { region: 'us-east-1', disk: 'ssd' }), true);
  assert.equal(matchesMetadata(o, { region: 'us-west-1', disk: 'ssd', extra: 'x' }), true);
  assert.equal(matchesMetadata(o, { region: 'eu-west-1', disk: 'ssd' }), false);
  assert.equal(matchesMetadata(o, { region: 'us-east-1' }), false);
  assert.equal(matchesMetadata(o, {}), false);
  assert.equal(matchesMetadata(xfleet(''), {}), true, 'no requirement matches every machine');
  assert.equal(matchesMetadata(xfleet('MachineMetadata=constructor=x'), {}), false, 'prototype keys are not metadata');
});

test('conflictsWith: either side matching is enough; a unit does not conflict with itself', () => {
  const a = withOptions('web@1.service', { conflicts: ['web@*.service'] });
  const b = withOptions('web@2.service', {});
  const c = withOptions('db.service', { conflicts: ['cache*'] });
  assert.equal(conflictsWith(a, b), true);
  assert.equal(conflictsWith(b, a), true);
  assert.equal(conflictsWith(a, c), false);
  assert.equal(conflictsWith(c, withOptions('cache.service', {})), true);
  assert.equal(conflictsWith(a, a), false);
});

test('checkMachineOfCycles finds MachineOf and Replaces cycles, once each', () => {
  const units = [
    withOptions('a.service', { machineOf: ['b.service'], lines: { MachineOf: 7 } }),
    withOptions('b.service', { machineOf: ['c.service'] }),
    withOptions('c.service', { machineOf: ['a.service'] }),
    withOptions('d.service', { machineOf: ['a.service', 'missing.service'] }),
    withOptions('r1.service', { replaces: ['r2.service'], lines: { Replaces: 9 } }),
    withOptions('r2.service', { replaces: ['r1.service'] }),
    withOptions('r3.service', { replaces: ['r1.service'] }),
  ];
  const problems = checkMachineOfCycles(units);
  assert.deepEqual(
    problems.map((p) => [p.file, p.line, p.message.split(':')[0]]),
    [
      ['a.service', 7, 'MachineOf cycle a.service -> b.service -> c.service -> a.service'],
      ['r1.service', 9, 'Replaces cycle r1.service -> r2.service -> r1.service'],
    ],
  );
  assert.deepEqual(checkMachineOfCycles([...units.slice(1, 4), ...units.slice(5)]), [], 'breaking the cycles removes the problems');
});
