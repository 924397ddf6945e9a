/**
 * The one mock-runtime helper for Pulumi tests. `startMocks` installs Pulumi's mock monitor
 * (pulumi.runtime.setMocks) and wraps its registerResource so that every registration is
 * recorded with what the mock callbacks alone do not see: the parent URN, provider, dependencies
 * and resource options (ignoreChanges, additionalSecretOutputs, deleteBeforeReplace). Inputs
 * are recorded with secrets unwrapped and the secret ones listed. Invokes (`call`) are recorded
 * and answered by the test's `call`.
 *
 * The mock monitor echoes a resource's inputs as its state; `outputs` adds computed properties
 * (ids, ARNs, IPs). The real engine marks `additionalSecretOutputs` secret; the mock monitor does
 * not, so this helper does the same for the state it returns, which keeps Output.isSecret
 * meaningful on those properties.
 *
 * Nothing here is a real `pulumi up`: no engine, no provider plugin, no cloud.
 */
import { spawnSync } from 'node:child_process';
import * as pulumi from '@pulumi/pulumi';

const SIG_KEY = '4dabf18193072939515e22adb298388d';
const SECRET_SIG = '1b47061264138c4ac30d75fd1eb44270';

export interface Registered {
  type: string;
  name: string;
  urn: string;
  /** URN of the parent ('' for none). */
  parent: string;
  custom: boolean;
  /** Provider reference (`urn::id`), '' for the default provider. */
  provider: string;
  /** Inputs with secrets unwrapped. */
  inputs: Record<string, unknown>;
  /** Top-level input names whose value was (or contained) a secret. */
  secretInputs: string[];
  ignoreChanges: string[];
  additionalSecretOutputs: string[];
  deleteBeforeReplace: boolean;
  dependencies: string[];
}

export interface Invocation {
  token: string;
  args: Record<string, unknown>;
}

export interface MockOptions {
  project?: string;
  stack?: string;
  preview?: boolean;
  /** Full config keys (`flotilla:platform`) and values. */
  config?: Record<string, string>;
  secretKeys?: string[];
  /** Answers invokes; return the result object. */
  call?: (token: string, args: Record<string, unknown>) => Record<string, unknown>;
  /** Extra state for a resource (computed outputs) merged over its echoed inputs. */
  outputs?: (type: string, name: string, inputs: Record<string, unknown>) => Record<string, unknown> | Promise<Record<string, unknown>>;
}

function isSecretWrapper(v: unknown): v is { value: unknown } {
  return typeof v === 'object' && v !== null && (v as Record<string, unknown>)[SIG_KEY] === SECRET_SIG;
}

/** Unwraps RPC secret wrappers; reports whether any was found. */
export function unwrapSecrets(v: unknown): { value: unknown; secret: boolean } {
  if (isSecretWrapper(v)) return { value: unwrapSecrets(v.value).value, secret: true };
  if (Array.isArray(v)) {
    let secret = false;
    const value = v.map((x) => {
      const u = unwrapSecrets(x);
      secret ||= u.secret;
      return u.value;
    });
    return { value, secret };
  }
  if (typeof v === 'object' && v !== null && !(v instanceof pulumi.asset.Asset)) {
    let secret = false;
    const value: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const u = unwrapSecrets(x);
      secret ||= u.secret;
      value[k] = u.value;
    }
    return { value, secret };
  }
  return { value: v, secret: false };
}

export class MockRecorder {
  readonly resources: Registered[] = [];
  readonly calls: Invocation[] = [];
  inFlight = 0;
  private lastChange = Date.now();

  touch(): void {
    this.lastChange = Date.now();
  }

  /** Waits until no registration is in flight and none has started for `quietMs`. */
  async settle(quietMs = 150, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.inFlight === 0 && Date.now() - this.lastChange >= quietMs) return;
      if (Date.now() > deadline) throw new Error(`mock registrations did not settle (${this.inFlight} in flight)`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The one resource with this name (and type, where names repeat across types, as Pulumi allows). */
  byName(name: string, type?: string): Registered {
    const r = this.resources.filter((x) => x.name === name && (type === undefined || x.type === type));
    if (r.length !== 1) throw new Error(`expected one resource named ${name}${type ? ` of type ${type}` : ''}, found ${r.length}: ${this.summary().join('; ')}`);
    return r[0]!;
  }

  ofType(type: string): Registered[] {
    return this.resources.filter((x) => x.type === type);
  }

  /** The registered parent of `r` (undefined for a root resource). */
  parentOf(r: Registered): Registered | undefined {
    return r.parent ? this.resources.find((x) => x.urn === r.parent) : undefined;
  }

  /** Sorted `type name` lines with the parent's name: a compact view of the whole graph. */
  summary(): string[] {
    return this.resources.map((r) => `${r.type} ${r.name} <- ${this.parentOf(r)?.name ?? '(root)'}`).sort();
  }
}

interface RawMonitor {
  registerResource(req: RegisterRequest, cb: (err: unknown, res: unknown) => void): unknown;
  invoke(req: unknown, cb: (err: unknown, res: unknown) => void): unknown;
  resources: Map<string, { urn: string }>;
}

interface RegisterRequest {
  getType(): string;
  getName(): string;
  getParent(): string;
  getCustom(): boolean;
  getProvider(): string;
  getIgnorechangesList(): string[];
  getAdditionalsecretoutputsList(): string[];
  getDeletebeforereplace(): boolean;
  getDependenciesList(): string[];
}

/** Installs the mock runtime with `opts.config`; every registration from now on is recorded. */
export async function startMocks(opts: MockOptions = {}): Promise<MockRecorder> {
  const rec = new MockRecorder();
  const pending = new Map<string, RegisterRequest>();
  await pulumi.runtime.setMocks(
    {
      newResource: async (args: pulumi.runtime.MockResourceArgs): Promise<pulumi.runtime.MockResourceResult> => {
        const req = pending.get(`${args.type}::${args.name}`);
        const extra = opts.outputs ? await opts.outputs(args.type, args.name, unwrapSecrets(args.inputs).value as Record<string, unknown>) : {};
        const state: Record<string, unknown> = { ...args.inputs, ...extra };
        for (const k of req?.getAdditionalsecretoutputsList() ?? []) {
          if (state[k] !== undefined && !isSecretWrapper(state[k])) state[k] = pulumi.secret(unwrapSecrets(state[k]).value);
        }
        return { id: args.custom ? `${args.name}-id` : undefined, state };
      },
      call: (args: pulumi.runtime.MockCallArgs): Record<string, unknown> => {
        const a = unwrapSecrets(args.inputs).value as Record<string, unknown>;
        rec.calls.push({ token: args.token, args: a });
        if (!opts.call) throw new Error(`unexpected invoke ${args.token}`);
        return opts.call(args.token, a);
      },
    },
    opts.project ?? 'flotilla',
    opts.stack ?? 'test',
    opts.preview ?? false,
  );
  pulumi.runtime.setAllConfig(opts.config ?? {}, opts.secretKeys ?? []);
  const monitor = pulumi.runtime.getMonitor() as unknown as RawMonitor;
  const original = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req: RegisterRequest, cb: (err: unknown, res: unknown) => void) => {
    rec.inFlight++;
    rec.touch();
    pending.set(`${req.getType()}::${req.getName()}`, req);
    return original(req, (err: unknown, res: unknown) => {
      try {
        if (!err) {
          const r = res as { getUrn(): string; getObject(): { toJavaScript(): Record<string, unknown> } | undefined };
          // Inputs as the mock saw them: deserialised request properties, secrets unwrapped.
          const raw = (req as unknown as { getObject(): { toJavaScript(): Record<string, unknown> } | undefined }).getObject()?.toJavaScript() ?? {};
          const inputs: Record<string, unknown> = {};
          const secretInputs: string[] = [];
          for (const [k, v] of Object.entries(raw)) {
            const u = unwrapSecrets(v);
            inputs[k] = u.value;
            if (u.secret) secretInputs.push(k);
          }
          rec.resources.push({
            type: req.getType(),
            name: req.getName(),
            urn: r.getUrn(),
            parent: req.getParent(),
            custom: req.getCustom(),
            provider: req.getProvider(),
            inputs,
            secretInputs: secretInputs.sort(),
            ignoreChanges: req.getIgnorechangesList(),
            additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
            deleteBeforeReplace: req.getDeletebeforereplace(),
            dependencies: req.getDependenciesList(),
          });
        }
      } finally {
        rec.inFlight--;
        rec.touch();
        cb(err, res);
      }
    });
  };
  return rec;
}

/** A checked key pair (src/ssh/keys.ts) as `{ public, private }` text, the shape tests use for an admin key. */
export function keyPairText(k: { publicKey: string; privateKey: string }): { public: string; private: string } {
  return { public: k.publicKey, private: k.privateKey };
}

/** The value of an Output (mock runtime: always known). */
export function promiseOf<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}

/** Whether an Output is secret. */
export function isSecret(o: pulumi.Output<unknown>): Promise<boolean> {
  return (o as unknown as { isSecret: Promise<boolean> }).isSecret;
}

/** `npm ls @pulumi/pulumi --all --parseable` paths: one line means one copy (two copies bypass the mocks: pulumi#12141). */
export function pulumiCopies(cwd: string): string[] {
  const res = spawnSync('npm', ['ls', '@pulumi/pulumi', '--all', '--parseable'], { cwd, encoding: 'utf8' });
  return res.stdout.split('\n').map((l) => l.trim()).filter((l) => l.endsWith('node_modules/@pulumi/pulumi'));
}
