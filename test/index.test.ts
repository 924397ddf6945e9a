/**
 * The library face: the README's "Using Flotilla as a library" example runs as written, through
 * the package's own name (`exports` in package.json), and prints what it says.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import * as flotilla from '../src/index';

const ROOT = path.join(__dirname, '..');

test("the README's library example runs as written", () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.split('## Using Flotilla as a library')[1];
  assert.ok(section, 'README has the section');
  const code = /```ts\n([\s\S]*?)```/.exec(section)![1]!;
  assert.match(code, /from 'flotilla'/);
  // Inside the package (so `flotilla` resolves to this checkout) but in an ignored folder.
  fs.mkdirSync(path.join(ROOT, 'test-artifacts'), { recursive: true });
  const dir = fs.mkdtempSync(path.join(ROOT, 'test-artifacts', 'readme-'));
  try {
    const file = path.join(dir, 'example.ts');
    fs.writeFileSync(file, code);
    const r = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^core1: cloud-config, \d+ bytes\ncore2: cloud-config, \d+ bytes\ncore3: cloud-config, \d+ bytes\n\d+ warnings: \d+ not carried over, \d+ carried over differently\nrefused \(invalid-input\): \d+ problem\(s\)\n$/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the API names what the CLI does', () => {
  for (const fn of ['loadSpecFile', 'renderCluster', 'validateFile', 'convertLegacy', 'upLocal', 'downLocal', 'listClusters', 'readRecord', 'replaceNodes', 'runVerify', 'runSmoke', 'runChaos', 'UnitsClient', 'Registry']) {
    assert.equal(typeof (flotilla as Record<string, unknown>)[fn], 'function', fn);
  }
});
