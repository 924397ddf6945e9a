/**
 * A real image build that fails (debootstrap asked for a package Debian does not have): the
 * error names the step and its log, the log holds debootstrap's complaint, and nothing
 * half-built is left where an image or base layer would be found.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FlotillaError } from '../../../src/errors';
import { bundleAgent, type AgentBundle } from '../../../src/provision/image/bundle';
import { buildImage, listImages, type BuildProgress } from '../../../src/provision/image';
import { defaultRecipe } from '../../../src/provision/image/recipe';

describe('image build failures', { timeout: 10 * 60_000 }, () => {
  let state: string;
  let saved: string | undefined;
  let bundle: AgentBundle;

  before(async () => {
    saved = process.env.FLOTILLA_STATE_DIR;
    state = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-state-'));
    process.env.FLOTILLA_STATE_DIR = state;
    bundle = await bundleAgent();
  });

  after(() => {
    if (saved === undefined) delete process.env.FLOTILLA_STATE_DIR;
    else process.env.FLOTILLA_STATE_DIR = saved;
    fs.rmSync(state, { recursive: true, force: true });
  });

  it('names the failed step and its log, and leaves nothing half-built', async () => {
    const recipe = defaultRecipe(bundle.hash);
    recipe.base.packages.push('flotilla-no-such-package');
    const events: BuildProgress[] = [];
    let err: unknown;
    try {
      await buildImage({ recipe, bundle }, (p) => events.push(p));
    } catch (e) {
      err = e;
    }
    assert.ok(FlotillaError.is(err), `expected a FlotillaError, got ${String(err)}`);
    assert.equal(err.code, 'external');
    assert.match(err.message, /build failed at step "debootstrap"/);
    const logFile = /log: (\S+)/.exec(err.message)?.[1];
    assert.ok(logFile && fs.existsSync(logFile), `log named in the error exists: ${logFile}`);
    assert.ok(logFile!.startsWith(state));
    assert.match(fs.readFileSync(logFile!, 'utf8'), /flotilla-no-such-package/);
    assert.deepEqual(events.filter((e) => e.phase === 'start').map((e) => e.step), ['debootstrap']);
    assert.deepEqual(listImages(), []);
    const leftovers = (dir: string): string[] => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => !f.startsWith('.lock')) : []);
    assert.deepEqual(leftovers(path.join(state, 'images')), []);
    assert.deepEqual(leftovers(path.join(state, 'cache', 'base')), []);
  });
});
