import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { FlotillaError } from '../../src/errors';
import {
  get,
  getAll,
  getList,
  parseUnitFile,
  quoteWord,
  serializeUnitFile,
  splitWords,
  unitNameInfo,
  unitNameProblem,
  type UnitFile,
} from '../../src/units/unit-file';

/** The parse result without source text and trivia: what a unit means. */
function meaning(u: UnitFile): Array<{ name: string; entries: Array<[string, string]> }> {
  return u.sections.map((s) => ({ name: s.name, entries: s.entries.map((e) => [e.key, e.value] as [string, string]) }));
}

function parseError(text: string | Uint8Array, name = 'x.service'): FlotillaError {
  try {
    parseUnitFile(text, name);
  } catch (err) {
    assert.ok(FlotillaError.is(err), `expected FlotillaError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a parse error');
}

test('sections, repeated keys in order, whitespace around =, comments, line numbers', () => {
  const text = [
    '# leading comment',
    '[Unit]',
    'Description = A web server  ',
    '',
    '; another comment',
    '[Service]',
    'ExecStartPre=/bin/true',
    '  ExecStartPre =/bin/echo two',
    'ExecStart=/usr/bin/web',
    '[Unit]',
    'After=network.target',
  ].join('\n');
  const u = parseUnitFile(text, 'web.service');
  assert.deepEqual(meaning(u), [
    { name: 'Unit', entries: [['Description', 'A web server']] },
    { name: 'Service', entries: [['ExecStartPre', '/bin/true'], ['ExecStartPre', '/bin/echo two'], ['ExecStart', '/usr/bin/web']] },
    { name: 'Unit', entries: [['After', 'network.target']] },
  ]);
  assert.equal(u.sections[1]!.line, 6);
  assert.deepEqual(u.sections[1]!.entries.map((e) => e.line), [7, 8, 9]);
  assert.deepEqual(getAll(u, 'Service', 'ExecStartPre'), ['/bin/true', '/bin/echo two']);
  assert.equal(get(u, 'Unit', 'After'), 'network.target', 'repeated sections are merged');
  assert.equal(get(u, 'Unit', 'Nope'), undefined);
  assert.equal(serializeUnitFile(u), text, 'unchanged file serialises to the same text (no final newline kept)');
});

test('continuations: backslash becomes a space, comments inside are skipped, escaped backslash does not continue', () => {
  const text = [
    '[Service]',
    'ExecStart=/bin/sh -c \\',
    '# skipped comment',
    "  'echo one; \\",
    "  echo two'",
    'Literal=ends with two \\\\',
    'Next=1',
    'Last=at end of file \\',
  ].join('\r\n');
  const u = parseUnitFile(text, 'c.service');
  assert.equal(get(u, 'Service', 'ExecStart'), "/bin/sh -c    'echo one;    echo two'");
  assert.deepEqual(splitWords(get(u, 'Service', 'ExecStart')!), ['/bin/sh', '-c', 'echo one;    echo two']);
  assert.equal(get(u, 'Service', 'Literal'), 'ends with two \\\\');
  assert.equal(get(u, 'Service', 'Next'), '1');
  assert.equal(get(u, 'Service', 'Last'), 'at end of file');
  assert.deepEqual(u.sections[0]!.entries.map((e) => e.line), [2, 6, 7, 8]);
  assert.equal(serializeUnitFile(u), text, 'CRLF and continuations survive the round trip');
});

test('a blank line ends a continuation', () => {
  const u = parseUnitFile('[S]\nA=x \\\n\nB=y\n', 'c.service');
  assert.deepEqual(meaning(u), [{ name: 'S', entries: [['A', 'x'], ['B', 'y']] }]);
});

test('BOM, CR-only line ends, final newline and comments after the last entry round-trip', () => {
  for (const text of ['\ufeff[A]\nk=v\n# tail\n\n', '[A]\rk=v\r', '[A]\nk=v', '', '# only a comment\n']) {
    const u = parseUnitFile(text, 'x.service');
    assert.equal(serializeUnitFile(u), text, JSON.stringify(text));
  }
  assert.equal(get(parseUnitFile('\ufeff[A]\nk=v\n', 'x.service'), 'A', 'k'), 'v');
});

test('every problem is reported at once, each with file:line', () => {
  const err = parseError('Orphan=1\n[Unit\n[]\n[Ok]\nno equals sign\n = value\n[Bad"Name]\nk=\0\n');
  assert.equal(err.code, 'invalid-input');
  assert.deepEqual(
    err.problems.map((p) => [p.file, p.line]),
    [
      ['x.service', 1],
      ['x.service', 2],
      ['x.service', 3],
      ['x.service', 5],
      ['x.service', 6],
      ['x.service', 7],
      ['x.service', 8],
    ],
  );
  assert.match(err.message, /x\.service:1: .*outside any section/);
  assert.match(err.message, /x\.service:2: malformed section header/);
  assert.match(err.message, /x\.service:5: expected KEY=VALUE/);
  assert.match(err.message, /x\.service:6: empty key/);
  assert.match(err.message, /x\.service:8: contains a NUL byte/);
});

test('the file option names a path in problems', () => {
  try {
    parseUnitFile('junk\n', 'web.service', { file: 'units/web.service' });
    assert.fail('expected an error');
  } catch (err) {
    assert.ok(FlotillaError.is(err));
    assert.equal(err.problems[0]!.file, 'units/web.service');
    assert.match(err.message, /units\/web\.service:1:/);
  }
});

test('invalid UTF-8 is reported with its line', () => {
  const bytes = Buffer.concat([Buffer.from('[A]\nk=v\nbad='), Buffer.from([0xc3, 0x28]), Buffer.from('\nz=1\n')]);
  const err = parseError(bytes);
  assert.deepEqual(err.problems.map((p) => [p.line, p.message]), [[3, 'invalid UTF-8']]);
  assert.equal(get(parseUnitFile(Buffer.from('[A]\nk=é\n'), 'x.service'), 'A', 'k'), 'é');
});

test('getList: an empty assignment resets a list setting', () => {
  const u = parseUnitFile('[Service]\nEnvironment=A=1\nEnvironment=\nEnvironment=B=2\nEnvironment=C=3\n', 'x.service');
  assert.deepEqual(getList(u, 'Service', 'Environment').map((e) => e.value), ['B=2', 'C=3']);
  assert.deepEqual(getAll(u, 'Service', 'Environment'), ['A=1', '', 'B=2', 'C=3']);
});

test('changed and new entries are serialised as Key=Value; unchanged ones keep their text', () => {
  const u = parseUnitFile('[Service]\nExecStart = /bin/a   # not a comment\nUser=x\n', 'x.service');
  u.sections[0]!.entries[1]!.value = 'y';
  u.sections[0]!.entries.push({ key: 'Group', value: 'z', line: 0 });
  u.sections.push({ name: 'Install', line: 0, entries: [{ key: 'WantedBy', value: 'multi-user.target', line: 0 }] });
  assert.equal(
    serializeUnitFile(u),
    '[Service]\nExecStart = /bin/a   # not a comment\nUser=y\nGroup=z\n[Install]\nWantedBy=multi-user.target\n',
  );
});

test('serialise refuses values a unit file cannot hold', () => {
  const bad = (key: string, value: string): void => {
    const u: UnitFile = { name: 'x.service', sections: [{ name: 'S', line: 0, entries: [{ key, value, line: 0 }] }] };
    assert.throws(() => serializeUnitFile(u), (e: unknown) => FlotillaError.is(e) && e.code === 'invalid-input', `${key}=${value}`);
  };
  bad('K', 'two\nlines');
  bad('K', ' padded');
  bad('K', 'ends with \\');
  bad('', 'v');
  bad('#K', 'v');
  bad('K=', 'v');
});

test('splitWords: quotes, escapes, and what systemd rejects', () => {
  const cases: Array<[string, string[]]> = [
    ['', []],
    ['  a  b\tc ', ['a', 'b', 'c']],
    ['"a b" \'c d\'', ['a b', 'c d']],
    ['a"b c"d', ['ab cd']],
    ['""', ['']],
    ['"say \\"hi\\""', ['say "hi"']],
    ["'it\\'s'", ["it's"]],
    ['\\x41\\101\\u00e9\\U0001F600', ['AAé😀']],
    ['a\\sb \\n\\t', ['a b', '\n\t']],
    ['one\\ word', ['one word']],
    ['VAR1="word1 word2" VAR2=word3', ['VAR1=word1 word2', 'VAR2=word3']],
    ['/bin/sh -c \'while :; do date +%%s > $MARK; done\'', ['/bin/sh', '-c', 'while :; do date +%%s > $MARK; done']],
  ];
  for (const [input, words] of cases) assert.deepEqual(splitWords(input), words, input);
  for (const input of ['"open', "'open", 'trailing\\', '\\q', '\\x4', '\\x00', '\\400', '\\uD800']) {
    assert.throws(() => splitWords(input), (e: unknown) => FlotillaError.is(e) && e.code === 'invalid-input', input);
  }
});

test('quoteWord is the inverse of splitWords (property)', () => {
  fc.assert(
    fc.property(fc.array(fc.string({ unit: 'binary' }).filter((w) => !w.includes('\0'))), (words) => {
      const line = words.map(quoteWord).join(' ');
      assert.deepEqual(splitWords(line), words);
    }),
    { numRuns: 500 },
  );
});

test('unitNameInfo: plain, template, instance; invalid names', () => {
  assert.deepEqual(unitNameInfo('web.service'), {
    name: 'web.service',
    stem: 'web',
    prefix: 'web',
    instance: '',
    kind: 'plain',
    type: 'service',
  });
  assert.deepEqual(unitNameInfo('web@.socket'), {
    name: 'web@.socket',
    stem: 'web@',
    prefix: 'web',
    instance: '',
    template: 'web@.socket',
    kind: 'template',
    type: 'socket',
  });
  const inst = unitNameInfo('getty@tty1:x@y.timer');
  assert.equal(inst.kind, 'instance');
  assert.equal(inst.instance, 'tty1:x@y');
  assert.equal(inst.template, 'getty@.timer');
  for (const ok of ['a.target', 'a-b_c:d.e.mount', 'x\\x2d.path', 'a@1.2.service']) assert.equal(unitNameProblem(ok), undefined, ok);
  for (const bad of ['', 'web', 'web.exe', '.service', '@1.service', 'a b.service', 'a/b.service', 'x.scope', `${'a'.repeat(250)}.service`]) {
    assert.throws(() => unitNameInfo(bad), (e: unknown) => FlotillaError.is(e) && e.code === 'invalid-input', bad);
  }
});

// ---------------------------------------------------------------------------
// Properties

const keyArb = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,12}$/);
const sectionNameArb = fc.stringMatching(/^[A-Za-z][A-Za-z0-9 _-]{0,10}[A-Za-z0-9]$/);
/** A value the parser reads back unchanged: one line, no surrounding whitespace, no trailing odd backslashes. */
const valueArb = fc
  .string({ unit: fc.constantFrom('a', 'b', ' ', '"', "'", '\\', '=', '#', ';', '[', ']', '%', '$', 'é', '\t'), maxLength: 20 })
  .map((v) => v.replace(/^[ \t]+|[ \t]+$/g, ''))
  .filter((v) => !/(^|[^\\])(\\\\)*\\$/.test(v));
const spaceArb = fc.constantFrom('', ' ', '  ', '\t');
const commentArb = fc.constantFrom('', '# note', '; note', '   ', '#', '  # indented');

interface Model {
  sections: Array<{ name: string; comments: string[]; entries: Array<{ key: string; value: string; pad: [string, string, string]; comments: string[]; split: number }> }>;
  trailing: string[];
  eol: '\n' | '\r\n';
}

const modelArb: fc.Arbitrary<Model> = fc.record({
  sections: fc.array(
    fc.record({
      name: sectionNameArb,
      comments: fc.array(commentArb, { maxLength: 2 }),
      entries: fc.array(
        fc.record({
          key: keyArb,
          value: valueArb,
          pad: fc.tuple(spaceArb, spaceArb, spaceArb),
          comments: fc.array(commentArb, { maxLength: 2 }),
          split: fc.nat({ max: 30 }),
        }),
        { maxLength: 6 },
      ),
    }),
    { maxLength: 5 },
  ),
  trailing: fc.array(commentArb, { maxLength: 2 }),
  eol: fc.constantFrom('\n' as const, '\r\n' as const),
});

/** Renders a model as text; some values are split over a continuation line at a space. */
function render(m: Model): { text: string; expected: Array<{ name: string; entries: Array<[string, string]> }> } {
  const lines: string[] = [];
  const expected: Array<{ name: string; entries: Array<[string, string]> }> = [];
  for (const s of m.sections) {
    lines.push(...s.comments, `[${s.name}]`);
    const entries: Array<[string, string]> = [];
    for (const e of s.entries) {
      lines.push(...e.comments);
      const [a, b, c] = e.pad;
      const splitAt = e.value.indexOf(' ', e.split);
      const rest = e.value.slice(splitAt + 1);
      // A continuation line that reads as a comment is skipped by systemd, so only split before other text.
      if (splitAt > 0 && rest !== '' && !/^[ \t]*[#;]/.test(rest) && !/\\$/.test(e.value.slice(0, splitAt))) {
        // "x y" written as "x\" + newline + "y": the backslash becomes a space, so the value is unchanged.
        lines.push(`${a}${e.key}${b}=${c}${e.value.slice(0, splitAt)}\\`, rest);
      } else {
        lines.push(`${a}${e.key}${b}=${c}${e.value}`);
      }
      entries.push([e.key, e.value]);
    }
    expected.push({ name: s.name, entries });
  }
  lines.push(...m.trailing);
  return { text: lines.length ? lines.join(m.eol) + m.eol : '', expected };
}

test('generated unit files parse to their model and serialise to the same text (property)', () => {
  fc.assert(
    fc.property(modelArb, (m) => {
      const { text, expected } = render(m);
      const u = parseUnitFile(text, 'gen.service');
      assert.deepEqual(meaning(u), expected);
      assert.equal(serializeUnitFile(u), text);
    }),
    { numRuns: 1000 },
  );
});

test('units built in code serialise to text that parses back to the same meaning (property)', () => {
  fc.assert(
    fc.property(modelArb, (m) => {
      const u: UnitFile = {
        name: 'gen.service',
        sections: m.sections.map((s) => ({ name: s.name, line: 0, entries: s.entries.map((e) => ({ key: e.key, value: e.value, line: 0 })) })),
      };
      const again = parseUnitFile(serializeUnitFile(u), 'gen.service');
      assert.deepEqual(meaning(again), meaning(u));
    }),
    { numRuns: 500 },
  );
});

test('random bytes never crash the parser: a unit file or a FlotillaError naming lines (property)', () => {
  const unitish = fc.constantFrom(...Buffer.from('[]=\\#; \t\r\n"\'aZ=\n[S]\nk=v\n\\\n'));
  const bytesArb = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.array(fc.oneof(unitish, fc.integer({ min: 0, max: 255 })), { maxLength: 300 }).map((a) => Uint8Array.from(a)),
  );
  let parsed = 0;
  let rejected = 0;
  fc.assert(
    fc.property(bytesArb, fc.boolean(), (bytes, asString) => {
      const input = asString ? Buffer.from(bytes).toString('latin1') : bytes;
      const physicalLines = Buffer.from(bytes).toString('latin1').split(/\r\n|\n|\r/).length;
      let u: UnitFile;
      try {
        u = parseUnitFile(input, 'fuzz.service');
      } catch (err) {
        assert.ok(FlotillaError.is(err), `non-Flotilla error: ${String(err)}`);
        assert.equal(err.code, 'invalid-input');
        assert.ok(err.problems.length > 0);
        for (const p of err.problems) {
          assert.equal(p.file, 'fuzz.service');
          assert.ok(Number.isInteger(p.line) && p.line! >= 1 && p.line! <= physicalLines, `line ${p.line} of ${physicalLines}`);
          assert.ok(err.message.includes(`fuzz.service:${p.line}:`));
        }
        rejected++;
        return;
      }
      parsed++;
      assert.deepEqual(meaning(parseUnitFile(serializeUnitFile(u), 'fuzz.service')), meaning(u));
    }),
    { numRuns: 3000 },
  );
  assert.ok(parsed > 50 && rejected > 50, `both outcomes exercised (parsed ${parsed}, rejected ${rejected})`);
});
