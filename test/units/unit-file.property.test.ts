/**
 * Property-based tests for the unit parser (unit-file.ts) and the [X-Fleet] reader
 * (xfleet.ts), issue 7. unit-file.test.ts already has the LF/CRLF round trip, units built in
 * code, and random bytes; these add CR line ends, byte order marks and missing final line
 * ends, mutations of valid files, hostile strings, word splitting and unit names on any
 * input, and [X-Fleet] on valid and random sections.
 * Seed and run count: see test/helpers/arbitraries.ts.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseUnitFile, quoteWord, serializeUnitFile, splitWords, unitNameInfo, type UnitFile } from '../../src/units/unit-file';
import { checkXFleet, parseXFleet, XFLEET_SECTION } from '../../src/units/xfleet';
import {
  assertInBounds,
  assertNoPrototypePollution,
  checkProperty,
  hostileString,
  linesOf,
  mutated,
  outcome,
  outcomeSummary,
  randomBytesAsText,
  requiredRuns,
  RunCounter,
  shortHostileString,
  unitFileText,
  type UnitModel,
} from '../helpers/arbitraries';

const runs = new RunCounter();

function meaning(u: UnitFile): UnitModel {
  return { sections: u.sections.map((s) => ({ name: s.name, entries: s.entries.map((e) => ({ key: e.key, value: e.value })) })) };
}

/** What the serialiser gives back for unchanged text: every line end becomes the first one. */
function normaliseLineEnds(text: string): string {
  const first = /\r\n|\n|\r/.exec(text)?.[0] ?? '\n';
  return text.replace(/\r\n|\n|\r/g, first);
}

/**
 * The parser's contract on any text: a unit that serialises back to the (line-end normalised)
 * text and means the same when parsed again, or a FlotillaError whose every problem names
 * the file and a line of the text; the same either way when called twice.
 */
function checkAnyUnitText(text: string): 'parsed' | 'rejected' {
  const first = outcome(() => parseUnitFile(text, 'prop.service'));
  assert.deepEqual(outcomeSummary(outcome(() => parseUnitFile(text, 'prop.service')), meaning), outcomeSummary(first, meaning), 'deterministic');
  if (first.ok) {
    const again = serializeUnitFile(first.value);
    assert.equal(again, normaliseLineEnds(text), 'unchanged text serialises back');
    assert.deepEqual(meaning(parseUnitFile(again, 'prop.service')), meaning(first.value));
  } else {
    const err = first.error;
    assert.equal(err.code, 'invalid-input');
    assert.ok(err.problems.length > 0, 'a rejection lists its problems');
    const lines = linesOf(text, 'any');
    for (const p of err.problems) {
      assert.equal(p.file, 'prop.service');
      assertInBounds(p, lines, 'unit file problem');
      assert.ok(err.message.includes(`prop.service:${p.line}: `), 'the message names file:line');
    }
  }
  assertNoPrototypePollution();
  return first.ok ? 'parsed' : 'rejected';
}

/** Checks each text and counts the outcomes, so a property can show it exercised both. */
function outcomeTally(): { check: (text: string) => void; assertBoth: () => void } {
  const seen = { parsed: 0, rejected: 0 };
  return {
    check: (text) => void seen[checkAnyUnitText(text)]++,
    assertBoth: () => assert.ok(seen.parsed > 0 && seen.rejected > 0, `both outcomes exercised: ${JSON.stringify(seen)}`),
  };
}

test('valid unit files with CR, CRLF or LF, a BOM and no final line end parse to their model and serialise to the same text', (t) => {
  checkProperty(
    t,
    1500,
    fc.property(
      unitFileText(),
      runs.count('valid round trip', ({ text, model }) => {
        const u = parseUnitFile(text, 'gen.service');
        assert.deepEqual(meaning(u), model);
        assert.equal(serializeUnitFile(u), text);
      }),
    ),
  );
});

test('mutated unit files: a unit that serialises back, or problems at lines of the text', (t) => {
  const tally = outcomeTally();
  checkProperty(t, 3000, fc.property(mutated(unitFileText().map((u) => u.text)), runs.count('mutated', tally.check)));
  tally.assertBoth();
});

test('hostile strings and random bytes as text: same contract', (t) => {
  const tally = outcomeTally();
  checkProperty(t, 2000, fc.property(fc.oneof(hostileString, randomBytesAsText), runs.count('hostile', tally.check)));
  tally.assertBoth();
});

test('splitWords and unitNameInfo on any string: words that re-quote to themselves, or a FlotillaError', (t) => {
  checkProperty(
    t,
    1500,
    fc.property(
      fc.oneof(hostileString, fc.string({ unit: fc.constantFrom('a', ' ', '"', "'", '\\', 'x', 'u', '0', '7', 'n', '@', '.', 's', 'e', 'r', 'v', 'i', 'c') })),
      runs.count('words and names', (input) => {
        const words = outcome(() => splitWords(input));
        // A NUL cannot be written back (systemd has no escape for it), and no parsed unit file holds one.
        if (!words.ok) assert.equal(words.error.code, 'invalid-input');
        else if (!input.includes('\0')) assert.deepEqual(splitWords(words.value.map(quoteWord).join(' ')), words.value);
        for (const name of [input, `${input}.service`, `a@${input}.service`]) {
          const info = outcome(() => unitNameInfo(name));
          if (!info.ok) {
            assert.equal(info.error.code, 'invalid-input');
            continue;
          }
          const v = info.value;
          assert.ok(name.length <= 255);
          assert.equal(`${v.prefix}${v.kind === 'plain' ? '' : `@${v.instance}`}.${v.type}`, name, 'the parts make up the name');
        }
      }),
    ),
  );
});

// ---------------------------------------------------------------------------
// [X-Fleet]

const prefixArb = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/);
const typeArb = fc.constantFrom('service', 'socket', 'timer', 'target');

/** What a generated [X-Fleet] section should read as. */
interface XFleetModel {
  unit: string;
  machineId?: string;
  machineOf: string[];
  replaces: string[];
  conflicts: string[];
  metadata: Array<{ key: string; values: string[] }>;
  global: boolean;
}

/** Valid [X-Fleet] options in the combinations fleet allows, never naming the unit itself. */
const xfleetModelArb: fc.Arbitrary<XFleetModel> = fc
  .record({
    unit: fc.tuple(prefixArb, fc.option(fc.stringMatching(/^[a-z0-9]{1,4}$/), { nil: undefined }), typeArb).map(([p, i, ty]) => `${p}${i === undefined ? '' : `@${i}`}.${ty}`),
    machineId: fc.option(fc.stringMatching(/^[0-9a-f]{32}$/), { nil: undefined }),
    machineOf: fc.uniqueArray(fc.tuple(prefixArb, typeArb).map(([p, ty]) => `other-${p}.${ty}`), { maxLength: 3 }),
    replaces: fc.uniqueArray(fc.tuple(prefixArb, typeArb).map(([p, ty]) => `old-${p}.${ty}`), { maxLength: 3 }),
    conflicts: fc.uniqueArray(fc.stringMatching(/^[a-z*?.@-]{1,8}$/).map((g) => `${g}*`), { maxLength: 3 }),
    metadata: fc.uniqueArray(fc.record({ key: fc.stringMatching(/^[a-z][a-z0-9_-]{0,6}$/), values: fc.uniqueArray(fc.stringMatching(/^[a-z0-9.-]{1,6}$/), { minLength: 1, maxLength: 3 }) }), {
      selector: (m) => m.key,
      maxLength: 3,
    }),
    global: fc.boolean(),
    replacesWinsOverConflicts: fc.boolean(),
  })
  .map(({ replacesWinsOverConflicts, ...m }) => {
    // fleet forbids Global with MachineID, MachineOf or Replaces, and Replaces with Conflicts.
    // Plain objects: fast-check builds records without a prototype, which deepEqual tells apart.
    const model: XFleetModel = { ...m, metadata: m.metadata.map(({ key, values }) => ({ key, values })) };
    if (model.global) {
      delete model.machineId;
      model.machineOf = [];
      model.replaces = [];
    }
    if (model.replaces.length > 0 && model.conflicts.length > 0) {
      if (replacesWinsOverConflicts) model.conflicts = [];
      else model.replaces = [];
    }
    return model;
  });

/** The section text for a model, using fleet's deprecated aliases for some keys. */
function xfleetText(m: XFleetModel, aliases: boolean): string {
  const lines = ['[Unit]', 'Description=generated', `[${XFLEET_SECTION}]`];
  if (m.machineId) lines.push(`${aliases ? 'X-ConditionMachineID' : 'MachineID'}=${m.machineId}`);
  if (m.machineOf.length) lines.push(`${aliases ? 'X-ConditionMachineOf' : 'MachineOf'}=${m.machineOf.join(' ')}`);
  for (const r of m.replaces) lines.push(`Replaces=${r}`);
  if (m.conflicts.length) lines.push(`${aliases ? 'X-Conflicts' : 'Conflicts'}=${m.conflicts.map(quoteWord).join(' ')}`);
  for (const { key, values } of m.metadata) {
    lines.push(`${aliases ? 'X-ConditionMachineMetadata' : 'MachineMetadata'}=${values.map((v) => `"${key}=${v}"`).join(' ')}`);
  }
  if (m.global) lines.push('Global=true');
  return `${lines.join('\n')}\n`;
}

test('[X-Fleet]: valid generated sections read back as their options with no problems', (t) => {
  checkProperty(
    t,
    1000,
    fc.property(
      xfleetModelArb,
      fc.boolean(),
      runs.count('x-fleet valid', (m, aliases) => {
        const options = parseXFleet(parseUnitFile(xfleetText(m, aliases), m.unit));
        assert.equal(options.machineId, m.machineId);
        assert.deepEqual(options.machineOf, m.machineOf);
        assert.deepEqual(options.replaces, m.replaces);
        assert.deepEqual(options.conflicts, m.conflicts);
        assert.deepEqual(options.machineMetadata, m.metadata);
        assert.equal(options.global, m.global);
      }),
    ),
  );
});

const xfleetKeyArb = fc.oneof(
  fc.constantFrom('MachineID', 'MachineOf', 'MachineMetadata', 'Conflicts', 'Global', 'Replaces', 'X-ConditionMachineOf', 'X-Conflicts', 'X-ConditionMachineBootID'),
  fc.constantFrom('X-Flotilla-Anything', 'Machineid', 'Confilcts', '__proto__', 'constructor', 'toString'),
  fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,12}$/),
);
const xfleetValueArb = fc.oneof(
  fc.constantFrom('', 'true', 'no', 'maybe', '%n', '%i', '%H', '%', '%%', 'a=b c=d', '=x', 'k=', '"k=v w"', '[', 'a[', '\\', '"', 'x.service', 'web@%i.service', '*', '[^a-]'),
  fc.array(fc.constantFrom('a', 'b.service', '%p', '%N', 'k=v', '*', '[a-c]', '"', "'", '\\x41', '\\q', ' ', '\t', '@'), { maxLength: 6 }).map((ws) => ws.join('')),
  shortHostileString,
);

test('[X-Fleet]: any keys and values give options or problems that each name an X-Fleet key and its line', (t) => {
  checkProperty(
    t,
    2000,
    fc.property(
      fc.oneof({ weight: 5, arbitrary: xfleetModelArb.map((m) => m.unit) }, { weight: 1, arbitrary: shortHostileString }),
      fc.array(fc.record({ section: fc.constantFrom(XFLEET_SECTION, XFLEET_SECTION, 'Service'), key: xfleetKeyArb, value: xfleetValueArb }), { maxLength: 8 }),
      runs.count('x-fleet random', (unitName, entries) => {
        // Built in code rather than parsed, so values may hold what no parsed file can (line breaks, NUL).
        const unit: UnitFile = {
          name: unitName,
          sections: entries.map((e, i) => ({ name: e.section, line: 2 * i + 1, entries: [{ key: e.key, value: e.value, line: 2 * i + 2 }] })),
        };
        const xfleetLines = new Map(entries.flatMap((e, i) => (e.section === XFLEET_SECTION ? [[2 * i + 2, e.key] as const] : [])));
        const checked = outcome(() => checkXFleet(unit));
        assert.ok(checked.ok, 'checkXFleet reports, it does not throw');
        const { problems } = checked.value;
        assert.deepEqual(checkXFleet(unit).problems, problems, 'deterministic');
        const nameOk = outcome(() => unitNameInfo(unitName)).ok;
        for (const p of problems) {
          assert.equal(p.file, unitName);
          if (!nameOk) {
            assert.deepEqual([p.path, p.line], ['', undefined], 'a bad unit name is the whole unit\'s problem');
            continue;
          }
          assert.ok(p.line !== undefined && xfleetLines.has(p.line), `line ${p.line} is an [X-Fleet] entry: ${JSON.stringify(p)}`);
          assert.ok(p.path.startsWith(`${XFLEET_SECTION}.`), `path names an X-Fleet key: ${JSON.stringify(p)}`);
        }
        const parsed = outcome(() => parseXFleet(unit));
        if (problems.length === 0) assert.ok(parsed.ok);
        else {
          assert.ok(!parsed.ok && parsed.error.code === 'invalid-input');
          assert.deepEqual(parsed.error.problems, problems);
        }
        assertNoPrototypePollution();
      }),
    ),
  );
});

test(`the unit parser target ran at least ${requiredRuns()} generated inputs`, (t) => {
  t.diagnostic(`runs: ${runs.report()}; total ${runs.total()}`);
  assert.ok(runs.total() >= requiredRuns(), `only ${runs.total()} runs`);
});

