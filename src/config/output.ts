/**
 * Turning rendered nodes into files: planned in memory, checked (optionally by the real
 * validators), and only then written, each atomically. A failure writes nothing.
 */
import * as path from 'node:path';
import { FlotillaError, type Problem } from '../errors';
import type { OutputFile } from '../util/fs';
import { renderCluster, type RenderedNode } from './render';
import { ensureSecrets, readSecrets, type ClusterSecrets } from './secrets';
import type { ConfigFormat, ResolvedSpec } from './spec';
import { placeUserData, type PlacedUserData } from './userdata';
import { cloudInitSchema, ignitionValidate } from './validators';

export interface NodeRenderReport {
  node: string;
  format: ConfigFormat;
  renderedBytes: number;
  userDataBytes: number;
  encoding: PlacedUserData['encoding'];
  files: string[];
  /** Set when the real validators ran: the tools that passed. */
  validatedBy?: string[];
}

export interface RenderPlan {
  files: OutputFile[];
  reports: NodeRenderReport[];
  rendered: RenderedNode[];
  secrets: ClusterSecrets;
}

export interface PlanOptions {
  format?: ConfigFormat;
  nodes?: string[];
  /** Output directory; secrets are kept in `<outDir>/secrets.json` unless `secretsFile` is given. */
  outDir: string;
  secretsFile?: string;
  /** Run `cloud-init schema` / `ignition-validate` on every output before writing. */
  validate?: boolean;
}

/** Runs the real validator for a rendered document; throws validation-failed naming the node. */
export function validateRendered(r: RenderedNode): string[] {
  const res = r.format === 'ignition' ? ignitionValidate(r.userData) : cloudInitSchema(r.userData);
  if (!res.ok) {
    const problems: Problem[] = res.messages.map((message) => ({ path: '', message, file: r.node }));
    throw new FlotillaError('validation-failed', `${res.tool} rejected the ${r.format} for node ${r.node}:\n${res.messages.map((m) => `  ${m}`).join('\n')}`, problems);
  }
  return [res.tool];
}

export function planRender(spec: ResolvedSpec, opts: PlanOptions): RenderPlan {
  const secretsFile = opts.secretsFile ?? path.join(opts.outDir, 'secrets.json');
  const secrets = ensureSecrets(spec, readSecrets(secretsFile));
  const rendered = renderCluster(spec, secrets, { ...(opts.format ? { format: opts.format } : {}), ...(opts.nodes ? { nodes: opts.nodes } : {}) });
  const files: OutputFile[] = [];
  const reports: NodeRenderReport[] = [];
  for (const r of rendered) {
    const placed = placeUserData(spec, r);
    const validatedBy = opts.validate ? validateRendered(r) : undefined;
    const own: OutputFile[] = [];
    const base = path.join(opts.outDir, r.node);
    if (r.format === 'ignition') own.push({ path: `${base}.ign`, data: r.userData });
    else {
      own.push({ path: `${base}.user-data`, data: r.userData });
      if (r.metaData) own.push({ path: `${base}.meta-data`, data: r.metaData });
      if (r.networkConfig) own.push({ path: `${base}.network-config`, data: r.networkConfig });
    }
    if (placed.encoding !== 'plain') own.push({ path: `${base}.ec2-user-data${placed.encoding === 'gzip' ? '.gz' : '.ign'}`, data: placed.userData });
    own.forEach((f) => (f.mode = 0o600)); // user-data carries the private host key
    files.push(...own);
    reports.push({
      node: r.node,
      format: r.format,
      renderedBytes: placed.renderedBytes,
      userDataBytes: placed.userData.length,
      encoding: placed.encoding,
      files: own.map((f) => f.path),
      ...(validatedBy ? { validatedBy } : {}),
    });
  }
  const hostKeys = Object.fromEntries(rendered.map((r) => [r.node, r.hostPublicKey]));
  files.push({ path: path.join(opts.outDir, 'host-keys.json'), data: `${JSON.stringify(hostKeys, null, 2)}\n`, mode: 0o644 });
  files.push({ path: secretsFile, data: `${JSON.stringify(secrets, null, 2)}\n`, mode: 0o600 });
  return { files, reports, rendered, secrets };
}
