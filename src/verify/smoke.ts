/**
 * `flotilla smoke`: a local cluster brought up, verified and torn down, with its report and
 * artifacts (consoles, rendered configs, boot timelines) kept whatever happens.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ResolvedSpec } from '../config/spec';
import { inventoryFromRecord } from '../provision/local/inventory';
import { type PhaseEvent } from '../provision/up';
import { downLocal, upLocal } from '../provision/local/up';
import { readSavedSpec, type BootMode, type ClusterRecord } from '../cluster/store';
import { Artifacts } from './artifacts';
import { formatReport, type ReportFormat } from './report';
import type { NodeBootTimes } from './report/timeline';
import type { Report } from './types';
import { runVerify } from './verify';

export interface SmokeOptions {
  spec: ResolvedSpec;
  /** Where consoles, rendered configs, timelines and the index go. */
  artifactsDir: string;
  /** The report's format (default junit). */
  format?: ReportFormat;
  /** How nodes start (default: snapshot, falling back to fresh with a line saying why). */
  boot?: BootMode;
  /** Leave the cluster up: always, or only when a check failed; default: tear it down. */
  leave?: 'always' | 'on-failure';
  /** Progress lines (up failed, verifying). */
  log?: (line: string) => void;
  /** Each phase of `up` as it ends. */
  onUpEvent?: (e: PhaseEvent) => void;
}

export interface SmokeResult {
  report: Report;
  /** The report in `format`. */
  text: string;
  ok: boolean;
  /** Whether the cluster was left running. */
  leftUp: boolean;
}

/** The record's per-node milestones (seconds) as the timeline picture wants them (ms). */
export function bootTimes(record: ClusterRecord): NodeBootTimes[] {
  return record.nodes.map((n) => {
    const t = record.timeline[n.name] ?? {};
    const ms = (s: number | undefined) => (s === undefined ? undefined : Math.round(s * 1000));
    const marks: NodeBootTimes['marks'] = {};
    const set = (k: keyof NodeBootTimes['marks'], v: number | undefined) => v !== undefined && (marks[k] = v);
    set('launch', ms(t.launch));
    set('kernel', ms(t.kernel));
    set('ssh', ms(t.ssh));
    set('firstBoot', ms(t['first-boot']));
    set('etcdHealthy', ms(t.etcd));
    set('agentRegistered', ms(t.agents));
    return { node: n.name, marks };
  });
}

/** Up, verify, artifacts, down. Rejects when `up` fails (artifacts of what booted are still written). */
export async function runSmoke(opts: SmokeOptions): Promise<SmokeResult> {
  const log = opts.log ?? (() => undefined);
  const artifacts = new Artifacts(opts.artifactsDir);
  let record: ClusterRecord | undefined;
  let ok = false;
  try {
    try {
      ({ record } = await upLocal({ spec: opts.spec, ...(opts.boot ? { boot: opts.boot } : {}), progress: (e) => opts.onUpEvent?.(e) }));
    } catch (err) {
      log(`up failed: ${(err as Error).message}`);
      throw err;
    }
    log('verifying');
    // Deadlines follow the inventory's pace: emulated (TCG) nodes get EMULATED_TIME_SCALE times the defaults.
    // Verified against the spec the nodes got (up adds the cluster key and, under TCG, its raises).
    const { report } = await runVerify({ inventory: inventoryFromRecord(record), spec: readSavedSpec(record.name) ?? opts.spec, artifacts });
    ok = report.ok;
    return { report, text: formatReport(report, opts.format ?? 'junit'), ok, leftUp: leaves(opts, ok) };
  } finally {
    if (record) {
      for (const node of record.nodes) {
        artifacts.copyConsoleLog(node.name, node.consoleLog);
        for (const f of ['rendered.user-data', 'rendered.network-config', 'rendered.ign']) {
          const file = path.join(path.dirname(node.consoleLog), f);
          if (fs.existsSync(file)) artifacts.writeRenderedConfig(node.name, f.replace(/^rendered\./, ''), fs.readFileSync(file));
        }
      }
      artifacts.writeTimelines(bootTimes(record), { title: `cluster ${record.name}` });
      artifacts.writeIndex({ cluster: record.name, phases: record.phases, timeline: record.timeline, cpuSeconds: record.cpuSeconds });
    }
    if (!leaves(opts, ok)) await downLocal(opts.spec.name);
  }
}

function leaves(opts: SmokeOptions, ok: boolean): boolean {
  return opts.leave === 'always' || (opts.leave === 'on-failure' && !ok);
}
