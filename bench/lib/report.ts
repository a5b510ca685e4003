import { writeFileSync } from 'node:fs';
import { cpus, freemem, loadavg, platform, release, totalmem } from 'node:os';
import type { TimePoint } from './generator.js';

export function machineInfo() {
  const c = cpus();
  return {
    cpus: c.length,
    cpuModel: c[0]?.model ?? 'unknown',
    memoryGB: Math.round(totalmem() / 1024 ** 3),
    freeMemoryGB: Math.round(freemem() / 1024 ** 3),
    os: `${platform()} ${release()}`,
    node: process.version,
    /** Other work on the machine when the run started (1, 5, 15 min): benchmarks on a shared box are noisy. */
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

interface Line {
  name: string;
  color: string;
  values: Array<[number, number]>;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function axisLabel(v: number): string {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(2)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(2)}`;
}

/** A line chart as inline SVG: no scripts, no CDN. */
export function svgChart(title: string, unit: string, lines: Line[], opts: { logY?: boolean } = {}): string {
  const W = 720;
  const H = 220;
  const L = 60;
  const R = 12;
  const T = 26;
  const B = 30;
  const all = lines.flatMap((l) => l.values);
  const xMax = Math.max(1, ...all.map(([x]) => x));
  const yMaxRaw = Math.max(0, ...all.map(([, y]) => y));
  const yMax = niceMax(yMaxRaw);
  const log = opts.logY === true && yMaxRaw > 0;
  const yMinLog = 0.1;
  const sy = (y: number) => {
    if (log) {
      const a = Math.log10(Math.max(y, yMinLog));
      const lo = Math.log10(yMinLog);
      const hi = Math.log10(yMax);
      return T + (H - T - B) * (1 - (a - lo) / (hi - lo));
    }
    return T + (H - T - B) * (1 - y / yMax);
  };
  const sx = (x: number) => L + (W - L - R) * (x / xMax);
  const ticks = log
    ? Array.from({ length: Math.log10(yMax) - Math.log10(yMinLog) + 1 }, (_, i) => yMinLog * 10 ** i)
    : [0, 0.25, 0.5, 0.75, 1].map((f) => f * yMax);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">`,
    `<text x="${L}" y="16" font-size="13" font-weight="600">${esc(title)} <tspan font-weight="400" fill="#666">(${esc(unit)})</tspan></text>`,
  ];
  for (const v of ticks) {
    const y = sy(v).toFixed(1);
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    parts.push(
      `<text x="${L - 6}" y="${y}" font-size="10" text-anchor="end" dy="3" fill="#555">${axisLabel(v)}</text>`,
    );
  }
  const xStep = niceMax(xMax / 8);
  for (let x = 0; x <= xMax; x += xStep) {
    parts.push(
      `<text x="${sx(x).toFixed(1)}" y="${H - B + 14}" font-size="10" text-anchor="middle" fill="#555">${x}s</text>`,
    );
  }
  let legendX = L + 4;
  for (const line of lines) {
    if (line.values.length === 0) continue;
    const d = line.values
      .map(([x, y], i) => `${i ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`)
      .join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${line.color}" stroke-width="1.6"/>`);
    parts.push(
      `<rect x="${legendX}" y="${H - 12}" width="10" height="3" fill="${line.color}"/><text x="${legendX + 14}" y="${H - 8}" font-size="10">${esc(line.name)}</text>`,
    );
    legendX += 24 + line.name.length * 6;
  }
  parts.push('</svg>');
  return parts.join('');
}

export interface ReportRun {
  title: string;
  series: TimePoint[];
  notes?: string[];
}

/** One self-contained HTML file: per run, latency (p50/p99), deliveries/s and server RSS/CPU over time. */
export function htmlReport(title: string, runs: ReportRun[], summaryHtml = ''): string {
  const sections = runs.map((run) => {
    const s = run.series;
    const pts = (f: (p: TimePoint) => number): Array<[number, number]> =>
      s.map((p) => [p.t, f(p)] as [number, number]);
    const latency = svgChart(
      'Delivery latency per second',
      'ms, log scale',
      [
        { name: 'p50', color: '#2b7bb9', values: pts((p) => p.latency.p50).filter(([, y]) => y > 0) },
        { name: 'p99', color: '#d9534f', values: pts((p) => p.latency.p99).filter(([, y]) => y > 0) },
        { name: 'max', color: '#bbbbbb', values: pts((p) => p.latency.max).filter(([, y]) => y > 0) },
      ],
      { logY: true },
    );
    const deliveries = svgChart('Throughput', 'per second', [
      { name: 'deliveries', color: '#2b7bb9', values: pts((p) => p.deliveries) },
      { name: 'messages offered', color: '#f0ad4e', values: pts((p) => p.offered) },
      { name: 'hearts sent', color: '#d9534f', values: pts((p) => p.heartsSent) },
    ]);
    const memory = svgChart('Server', 'RSS MB · CPU % of one core', [
      { name: 'RSS MB', color: '#5cb85c', values: pts((p) => p.rssMB) },
      { name: 'server CPU %', color: '#8e44ad', values: pts((p) => p.cpuPercent) },
      { name: 'generator CPU %', color: '#aaaaaa', values: pts((p) => p.genCpuPercent) },
    ]);
    const conns = svgChart('Connections', 'count', [
      { name: 'ready', color: '#2b7bb9', values: pts((p) => p.ready) },
      { name: 'open', color: '#aaaaaa', values: pts((p) => p.connected) },
    ]);
    const notes = (run.notes ?? []).map((n) => `<li>${esc(n)}</li>`).join('');
    return `<section><h2>${esc(run.title)}</h2>${notes ? `<ul>${notes}</ul>` : ''}<div class="charts">${latency}${deliveries}${memory}${conns}</div></section>`;
  });
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1520px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-top:1px solid #ddd;padding-top:12px}
.charts{display:flex;flex-wrap:wrap;gap:8px}svg{background:#fafafa;border:1px solid #eee}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
</style></head><body><h1>${esc(title)}</h1>${summaryHtml}${sections.join('\n')}</body></html>
`;
}

export function writeHtmlReport(path: string, title: string, runs: ReportRun[], summaryHtml = ''): void {
  writeFileSync(path, htmlReport(title, runs, summaryHtml));
}
