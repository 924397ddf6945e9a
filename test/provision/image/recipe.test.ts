import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BAKED_FILES, CONFIGURED_FILES, NODE_IMAGE_FILES } from '../../../src/config/image-files';
import { baseRecipeHash, canonicalJson, CONSOLE_FAILURE_MARKER, defaultBaseRecipe, defaultRecipe, recipeHash, type ImageRecipe } from '../../../src/provision/image/recipe';

const BUNDLE = 'a'.repeat(64);

function clone(r: ImageRecipe): ImageRecipe {
  return JSON.parse(JSON.stringify(r)) as ImageRecipe;
}

describe('recipe hashing', () => {
  it('is a stable sha256 of the recipe', () => {
    const h = recipeHash(defaultRecipe(BUNDLE));
    assert.match(h, /^[0-9a-f]{64}$/);
    assert.equal(recipeHash(defaultRecipe(BUNDLE)), h);
  });

  it('does not depend on object key order', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } }), canonicalJson({ a: { c: null, d: [1, { x: 1, y: 2 }] }, b: 1 }));
    const r = defaultRecipe(BUNDLE);
    const reordered = Object.fromEntries(Object.entries(r).reverse()) as unknown as ImageRecipe;
    assert.equal(recipeHash(reordered), recipeHash(r));
  });

  it('changes with the package list, the trimming script, the kernel, the files and the agent bundle', () => {
    const base = defaultRecipe(BUNDLE);
    const h = recipeHash(base);
    const variants: Array<[string, (r: ImageRecipe) => void]> = [
      ['package added', (r) => r.base.packages.push('strace')],
      ['package order', (r) => r.base.packages.reverse()],
      ['trimming script', (r) => (r.base.configureScript += '\nrm -rf /usr/share/zoneinfo\n')],
      ['kernel package', (r) => (r.base.kernel.package = 'linux-image-6.1.0-99-amd64')],
      ['kernel modules', (r) => r.base.kernel.modules.push('e1000')],
      ['kernel command line', (r) => (r.base.kernel.cmdline += ' debug')],
      ['baked file', (r) => (r.base.files['/etc/cloud/cloud.cfg.d/99_flotilla.cfg']!.contents += '# x\n')],
      ['file mode', (r) => (r.base.files['/etc/cloud/cloud.cfg.d/99_flotilla.cfg']!.mode = 0o600)],
      ['initrd /init', (r) => (r.base.initScript += '\n')],
      ['security updates', (r) => (r.base.securityUpdates = !r.base.securityUpdates)],
      ['agent bundle', (r) => (r.bundleHash = 'b'.repeat(64))],
      ['disk size', (r) => (r.diskGiB += 1)],
    ];
    const seen = new Set([h]);
    for (const [what, change] of variants) {
      const r = clone(base);
      change(r);
      const h2 = recipeHash(r);
      assert.notEqual(h2, h, what);
      seen.add(h2);
    }
    assert.equal(seen.size, variants.length + 1);
  });

  it('keys the base layer without the agent bundle, so a source change reuses the base', () => {
    const a = defaultRecipe(BUNDLE);
    const b = defaultRecipe('c'.repeat(64));
    assert.equal(baseRecipeHash(a.base), baseRecipeHash(b.base));
    assert.notEqual(recipeHash(a), recipeHash(b));
  });

  it('keeps what the brief requires in the default recipe', () => {
    const r = defaultRecipe(BUNDLE);
    for (const p of ['systemd-sysv', 'udev', 'kmod', 'dbus', 'cloud-init', 'python3-cffi-backend', 'openssh-server', 'etcd-server', 'etcd-client', 'iproute2', 'ca-certificates', 'sudo', 'e2fsprogs', 'netbase', 'ignition', 'nodejs']) {
      assert.ok(r.base.packages.includes(p), p);
    }
    const cfg = r.base.files['/etc/cloud/cloud.cfg.d/99_flotilla.cfg']!.contents;
    assert.match(cfg, /^datasource_list: \[ NoCloud, None \]$/m);
    assert.match(cfg, /^ssh_genkeytypes: \[ ed25519 \]$/m);
    assert.match(r.base.configureScript, /^: > \/etc\/machine-id$/m);
    assert.match(r.base.configureScript, /rm -f \/etc\/ssh\/ssh_host_\*/);
    assert.match(r.base.configureScript, /systemctl mask etcd\.service/);
    assert.match(r.base.configureScript, /systemd-networkd-wait-online\.service/);
  });
});

/** Paths a configure script creates with a shell redirect (`> /etc/x`) or `touch`. */
function configureScriptWrites(script: string = defaultBaseRecipe().configureScript): string[] {
  const redirects = [...script.matchAll(/(?<![0-9&])>>?\s*(\/[^\s;'"]+)/g)].map((m) => m[1]!);
  const touched = [...script.matchAll(/^\s*touch\s+([^;\n]+)/gm)].flatMap((m) => m[1]!.trim().split(/\s+/));
  return [...new Set([...redirects, ...touched])].filter((p) => p.startsWith('/') && !p.startsWith('/dev/'));
}

describe('files the image ships (src/config/image-files.ts, checked against Ignition configs)', () => {
  it('lists every file the recipe bakes in and every file the configure script writes', () => {
    const list = NODE_IMAGE_FILES;
    assert.deepEqual([...BAKED_FILES].sort(), Object.keys(defaultBaseRecipe().files).sort(), 'BAKED_FILES is the recipe\'s files');
    for (const p of Object.keys(defaultBaseRecipe().files)) assert.ok(list.includes(p), `baked ${p}`);
    const writes = configureScriptWrites();
    for (const p of ['/etc/hostname', '/etc/hosts', '/etc/fstab', '/etc/resolv.conf', '/etc/machine-id', '/etc/default/locale']) assert.ok(writes.includes(p), `the script parser sees ${p}`);
    for (const p of writes) assert.ok(CONFIGURED_FILES.includes(p), `configure script writes ${p}`);
    // The parser finds a write the list lacks (so the check above can fail).
    assert.deepEqual(configureScriptWrites('echo x > /etc/flotilla-new\ntouch /etc/a /etc/b\ncat /x 2>/dev/null\n'), ['/etc/flotilla-new', '/etc/a', '/etc/b']);
    assert.deepEqual(list, [...new Set(list)].sort());
  });

  it('first-boot units report a failure on the console (the marker up watches for)', () => {
    const files = defaultBaseRecipe().files;
    const marker = new RegExp(`^ExecStopPost=.*\\[ "\\$\\$SERVICE_RESULT" = success \\] \\|\\| echo "${CONSOLE_FAILURE_MARKER} first-boot (ignition|cloud-init) `, 'm');
    const unit = (p: string): string => files[p]?.contents ?? assert.fail(`no ${p} in the recipe`);
    assert.match(unit('/etc/systemd/system/flotilla-ignition.service'), marker);
    assert.match(unit('/etc/systemd/system/flotilla-ignition.service'), /first-boot ignition /);
    for (const s of ['cloud-init-local', 'cloud-init', 'cloud-final']) {
      assert.match(unit(`/etc/systemd/system/${s}.service.d/10-flotilla-console.conf`), marker, s);
      assert.match(unit(`/etc/systemd/system/${s}.service.d/10-flotilla-console.conf`), /first-boot cloud-init /, s);
    }
  });
});
