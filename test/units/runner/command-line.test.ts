/**
 * Exec command lines: environment substitution, and what a command receives when the
 * process runner runs it.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { substituteEnvironment } from '../../../src/units/runner/command-line';
import { readOr, setup } from './process-fixture';

test('substituteEnvironment follows systemd command-line rules', () => {
  const env = { W: 'a  b', ONE: 'x', EMPTY: '' };
  assert.deepEqual(substituteEnvironment(['$W', '${W}', 'p${ONE}q', '$$W', '$UNSET', '${UNSET}', 'sh $W', '$EMPTY', '$(cmd)', '$1'], env), [
    'a',
    'b',
    'a  b',
    'pxq',
    '$W',
    '',
    'sh $W',
    '$(cmd)',
    '$1',
  ]);
});

test('command lines: ${VAR} stays one word, $VAR splits, $$ is a literal $, specifiers expand, no shell', async (t) => {
  const { dir, runner } = setup(t);
  const out = path.join(dir, 'args');
  const unit = [
    '[Service]',
    'Type=oneshot',
    `Environment="WORDS=a b" OUT=${out}`,
    `WorkingDirectory=${dir}`,
    // sh is the program; everything after "sh" is its $@, printed one per line.
    "ExecStart=/bin/sh -c 'printf \"%%s\\n\" \"$@\" > $OUT; pwd >> $OUT' sh ${WORDS} $WORDS $$LIT x${WORDS}y %i %p $UNSET ';' '>' /dev/null",
  ].join('\n');
  await runner.start('args@inst.service', unit);
  assert.deepEqual(readOr(out).trim().split('\n'), ['a b', 'a', 'b', '$LIT', 'xa by', 'inst', 'args', ';', '>', '/dev/null', fs.realpathSync(dir)]);
});
