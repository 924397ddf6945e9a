/** fleetd's configuration: capacity detected from the host, overridden by fleetd.json or flags. */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { detectCapacity, loadFleetdConfig } from '../../src/units/fleetd';

const base = { endpoints: ['http://127.0.0.1:2379'], cluster: 'c', machineId: 'm1' };

function withFile(content: unknown, fn: (file: string) => void): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-fleetd-'));
  try {
    const file = path.join(dir, 'fleetd.json');
    fs.writeFileSync(file, JSON.stringify(content));
    fn(file);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('capacity is detected from the host when nothing sets it', () => {
  const detected = detectCapacity();
  assert.equal(detected.cpus, os.availableParallelism());
  assert.equal(detected.memoryMiB, Math.floor(os.totalmem() / 1024 ** 2));
  assert.deepEqual(loadFleetdConfig(undefined, base).capacity, detected);
});

test('fleetd.json and flags override each capacity field on its own; flags win', () => {
  withFile({ ...base, capacity: { memoryMiB: 512 } }, (file) => {
    assert.deepEqual(loadFleetdConfig(file, {}).capacity, { cpus: detectCapacity().cpus, memoryMiB: 512 });
    assert.deepEqual(loadFleetdConfig(file, { capacity: { cpus: 0.5 } }).capacity, { cpus: 0.5, memoryMiB: 512 });
    assert.deepEqual(loadFleetdConfig(file, { capacity: { memoryMiB: 2048 } }).capacity.memoryMiB, 2048);
  });
});

test('a bad capacity in fleetd.json names the file and the field', () => {
  withFile({ ...base, capacity: { cpus: -2 } }, (file) => {
    assert.throws(() => loadFleetdConfig(file, {}), (err: Error) => err.message === `${file}: capacity.cpus: cpus must be a positive number (got -2)`);
  });
  withFile({ ...base, capacity: { memoryMiB: 'lots' } }, (file) => {
    assert.throws(() => loadFleetdConfig(file, {}), /capacity\.memoryMiB: memoryMiB must be a positive number \(got "lots"\)/);
  });
});
