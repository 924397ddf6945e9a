/**
 * The artifacts directory of a run, as `flotilla smoke` (and `verify --artifacts`) fill it:
 *
 *   DIR/report.json, report.xml (JUnit), report.tap, report.txt
 *   DIR/boot-timeline.svg                  every node
 *   DIR/<node>/boot-timeline.svg           one node
 *   DIR/<node>/console.log                 the serial console (copied from the provisioner)
 *   DIR/<node>/journal-<unit>.txt          journalctl excerpts of failed units, over the pooled SSH connection
 *   DIR/<node>/config/<name>               the rendered first-boot configs
 *   DIR/index.json                         what is where
 *
 * Every file is written atomically (src/util/fs.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlotillaError } from '../errors';
import { writeFileAtomic } from '../util/fs';
import type { VerifyCluster } from './cluster';
import { formatReport, type ReportFormat } from './report';
import { renderBootTimeline, type NodeBootTimes, type TimelineOptions } from './report/timeline';
import { shq } from '../ssh';
import type { Report } from './types';

const REPORT_FILES: Record<ReportFormat, string> = { json: 'report.json', junit: 'report.xml', tap: 'report.tap', human: 'report.txt' };

function safeName(s: string): string {
  const n = s.replace(/[^A-Za-z0-9_.@:-]/g, '_').replace(/^\.+/, '_');
  return n.slice(0, 200) || '_';
}

export interface ArtifactEntry {
  path: string;
  kind: 'report' | 'timeline' | 'console' | 'journal' | 'config';
  node?: string;
  bytes: number;
}

export class Artifacts {
  readonly entries: ArtifactEntry[] = [];

  constructor(readonly dir: string) {
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new FlotillaError('external', `cannot create artifacts directory ${dir}: ${(err as Error).message}`);
    }
  }

  private put(rel: string, data: string | Uint8Array, kind: ArtifactEntry['kind'], node?: string, mode = 0o644): string {
    const file = path.join(this.dir, rel);
    writeFileAtomic(file, data, mode);
    this.entries.push({ path: rel, kind, ...(node ? { node } : {}), bytes: typeof data === 'string' ? Buffer.byteLength(data) : data.length });
    return file;
  }

  nodeDir(node: string): string {
    return path.join(this.dir, safeName(node));
  }

  /** The report in each format (default: all four). */
  writeReport(report: Report, formats: readonly ReportFormat[] = ['json', 'junit', 'tap', 'human']): string[] {
    return formats.map((f) => this.put(REPORT_FILES[f], formatReport(report, f), 'report'));
  }

  /** Copies a node's serial console log; keeps the last `maxBytes` (default 8 MiB) of a larger one. */
  copyConsoleLog(node: string, source: string, maxBytes = 8 * 1024 * 1024): string | undefined {
    let data: Buffer;
    try {
      const size = fs.statSync(source).size;
      const fd = fs.openSync(source, 'r');
      try {
        const len = Math.min(size, maxBytes);
        data = Buffer.alloc(len);
        fs.readSync(fd, data, 0, len, size - len);
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      return undefined; // no console (yet): nothing to copy
    }
    return this.put(path.join(safeName(node), 'console.log'), data, 'console', node);
  }

  writeRenderedConfig(node: string, name: string, contents: string | Uint8Array): string {
    // Rendered configs carry host private keys: keep them private.
    return this.put(path.join(safeName(node), 'config', safeName(name)), contents, 'config', node, 0o600);
  }

  /** Boot timeline for all nodes plus one per node. */
  writeTimelines(times: readonly NodeBootTimes[], opts: TimelineOptions = {}): string[] {
    const out = [this.put('boot-timeline.svg', renderBootTimeline(times, opts), 'timeline')];
    for (const t of times) out.push(this.put(path.join(safeName(t.node), 'boot-timeline.svg'), renderBootTimeline([t], { ...opts, title: `${opts.title ? `${opts.title}: ` : ''}${t.node}` }), 'timeline', t.node));
    return out;
  }

  /**
   * `journalctl -u UNIT` excerpts (last `lines` lines) for each failed unit, fetched over
   * the cluster's pooled connections; by default the failed units the report names.
   */
  async collectJournals(cluster: VerifyCluster, from: Report | ReadonlyArray<{ node: string; unit: string }>, lines = 200): Promise<string[]> {
    const wanted = Array.isArray(from) ? (from as ReadonlyArray<{ node: string; unit: string }>) : (from as Report).results.flatMap((r) => r.details?.failedUnits ?? []);
    const unique = [...new Map(wanted.map((w) => [`${w.node}\0${w.unit}`, w])).values()];
    const written: string[] = [];
    await Promise.all(
      unique.map(async ({ node, unit }) => {
        let text: string;
        try {
          const r = await cluster.ssh(node, `journalctl -u ${shq(unit)} -n ${Math.floor(lines)} --no-pager -o short-precise`, { sudo: true, timeoutMs: 20_000 });
          text = r.code === 0 ? r.stdout : `journalctl exited ${r.code}: ${r.stderr}\n${r.stdout}`;
        } catch (err) {
          text = `could not fetch the journal: ${(err as Error).message}\n`;
        }
        written.push(this.put(path.join(safeName(node), `journal-${safeName(unit)}.txt`), text, 'journal', node));
      }),
    );
    return written;
  }

  /** DIR/index.json: every artifact written so far. */
  writeIndex(extra: Record<string, unknown> = {}): string {
    const file = path.join(this.dir, 'index.json');
    writeFileAtomic(file, `${JSON.stringify({ ...extra, artifacts: this.entries }, null, 2)}\n`);
    return file;
  }
}
