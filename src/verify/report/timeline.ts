/**
 * The boot timeline as SVG: per node, one bar split into phases — launch → kernel → SSH →
 * cloud-init done → etcd healthy → agent registered — from the times each was reached.
 * Pure: timings in, SVG text out (every value escaped), so it is testable and `smoke`
 * only has to collect the times.
 */
import { escapeAttr, escapeText } from './xml';

export const BOOT_PHASES = ['launch', 'kernel', 'ssh', 'firstBoot', 'etcdHealthy', 'agentRegistered'] as const;
export type BootPhase = (typeof BOOT_PHASES)[number];

export const PHASE_LABELS: Record<BootPhase, string> = {
  launch: 'launch',
  kernel: 'kernel',
  ssh: 'SSH',
  firstBoot: 'cloud-init done',
  etcdHealthy: 'etcd healthy',
  agentRegistered: 'agent registered',
};

/** Each segment ends at its phase's mark and is coloured by it. */
const COLORS: Record<BootPhase, string> = {
  launch: '#9e9e9e',
  kernel: '#5c6bc0',
  ssh: '#26a69a',
  firstBoot: '#ffa726',
  etcdHealthy: '#ab47bc',
  agentRegistered: '#66bb6a',
};

export interface NodeBootTimes {
  node: string;
  /** Milliseconds since this node's launch for each phase reached; missing phases are left out. */
  marks: Partial<Record<BootPhase, number>>;
}

export interface TimelineOptions {
  title?: string;
  /** Width of the time axis in pixels (default 720). */
  width?: number;
  /** First boot label, e.g. "Ignition done" for Ignition clusters. */
  firstBootLabel?: string;
}

const fmt = (ms: number): string => (ms >= 10_000 ? `${(ms / 1000).toFixed(0)} s` : `${(ms / 1000).toFixed(1)} s`);

function niceStep(maxMs: number): number {
  const steps = [100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000];
  return steps.find((s) => maxMs / s <= 10) ?? 600_000;
}

export function renderBootTimeline(nodes: readonly NodeBootTimes[], opts: TimelineOptions = {}): string {
  const labels = { ...PHASE_LABELS, ...(opts.firstBootLabel ? { firstBoot: opts.firstBootLabel } : {}) };
  const axisW = opts.width ?? 720;
  const nameW = Math.min(220, 16 + 8 * Math.max(4, ...nodes.map((n) => n.node.length)));
  const rowH = 34;
  const top = opts.title ? 48 : 24;
  const legendH = 28;
  const maxMs = Math.max(1000, ...nodes.flatMap((n) => Object.values(n.marks).filter((v): v is number => typeof v === 'number' && Number.isFinite(v))));
  const x = (ms: number): number => nameW + Math.round((Math.max(0, ms) / maxMs) * axisW * 10) / 10;
  const height = top + rowH * nodes.length + 30 + legendH;
  const width = nameW + axisW + 40;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  if (opts.title) out.push(`<text x="8" y="20" font-size="14" font-weight="bold">${escapeText(opts.title)}</text>`);
  // Axis and grid.
  const step = niceStep(maxMs);
  const axisY = top + rowH * nodes.length + 4;
  out.push(`<g class="axis">`);
  for (let t = 0; t <= maxMs + 1; t += step) {
    out.push(`<line x1="${x(t)}" y1="${top - 4}" x2="${x(t)}" y2="${axisY}" stroke="#e0e0e0"/>`);
    out.push(`<text class="tick" x="${x(t)}" y="${axisY + 14}" text-anchor="middle" fill="#616161">${escapeText(fmt(t))}</text>`);
  }
  out.push('</g>');
  nodes.forEach((n, i) => {
    const y = top + i * rowH;
    out.push(`<g class="node" data-node="${escapeAttr(n.node)}">`);
    out.push(`<text class="node-name" x="8" y="${y + 18}" font-weight="bold">${escapeText(n.node)}</text>`);
    let prevMs = 0;
    let prevPhase: BootPhase | undefined;
    for (const phase of BOOT_PHASES) {
      const at = n.marks[phase];
      if (typeof at !== 'number' || !Number.isFinite(at)) continue;
      if (phase !== 'launch') {
        const x0 = x(prevMs);
        const w = Math.max(1, x(at) - x0);
        const tip = `${n.node}: ${prevPhase ? labels[prevPhase] : 'start'} → ${labels[phase]}: ${fmt(at - prevMs)} (at ${fmt(at)})`;
        out.push(`<rect class="phase" data-phase="${phase}" data-start-ms="${prevMs}" data-end-ms="${at}" x="${x0}" y="${y + 4}" width="${w}" height="${rowH - 12}" fill="${COLORS[phase]}"><title>${escapeText(tip)}</title></rect>`);
      }
      out.push(`<text class="mark" data-phase="${phase}" x="${x(at) + 2}" y="${y + rowH - 1}" font-size="9" fill="#424242">${escapeText(`${labels[phase]} ${fmt(at)}`)}</text>`);
      prevMs = at;
      prevPhase = phase;
    }
    out.push('</g>');
  });
  // Legend.
  const ly = height - legendH + 10;
  let lx = 8;
  out.push('<g class="legend">');
  for (const phase of BOOT_PHASES.filter((p) => p !== 'launch')) {
    out.push(`<rect x="${lx}" y="${ly}" width="10" height="10" fill="${COLORS[phase]}"/><text x="${lx + 14}" y="${ly + 9}">${escapeText(labels[phase])}</text>`);
    lx += 24 + labels[phase].length * 6.5;
  }
  out.push('</g>');
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
