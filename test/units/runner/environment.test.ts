import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { parseEnvironmentFile } from '../../../src/units/runner/environment';

test('parseEnvironmentFile: comments, quotes, continuations, and errors naming the line', () => {
  const text = [
    '# comment',
    '; comment',
    '',
    'A=plain value   ',
    '  B = spaced',
    'C="double \\"quoted\\" \\$x"',
    "D='single \\n kept'",
    'E="spans',
    'two lines"',
    'F=back\\',
    'slash',
    'G=',
    'H=a#not-a-comment',
  ].join('\n');
  assert.deepEqual(parseEnvironmentFile(text, '/etc/x.env'), [
    ['A', 'plain value'],
    ['B', 'spaced'],
    ['C', 'double "quoted" $x'],
    ['D', 'single \\n kept'],
    ['E', 'spans\ntwo lines'],
    ['F', 'backslash'],
    ['G', ''],
    ['H', 'a#not-a-comment'],
  ]);
  assert.throws(() => parseEnvironmentFile('A=1\nnot an assignment\n', '/e'), /\/e:2: expected NAME=VALUE/);
  assert.throws(() => parseEnvironmentFile('A=1\n1X=2\n', '/e'), /\/e:2: invalid variable name/);
  assert.throws(() => parseEnvironmentFile('A="open\n\n', '/e'), /\/e:\d+: unterminated double quote \(opened on line 1\)/);
});
