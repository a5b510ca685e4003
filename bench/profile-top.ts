/**
 * `npx tsx bench/profile-top.ts <file.cpuprofile> [--top 15]`: the functions with the most self time in a V8
 * CPU profile (from `node --cpu-prof`), with their share of all samples; `--by-file` groups by script instead.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface TopEntry {
  name: string;
  where: string;
  selfMs: number;
  share: number;
}

/** Self time per function (summed over every call site of it), largest first. */
export function topSelfTime(
  profile: CpuProfile,
  top = 15,
  byFile = false,
): { totalMs: number; entries: TopEntry[] } {
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    // Each sample's time is the delta to the next one.
    const dt = deltas[i + 1] ?? 0;
    selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + dt);
  }
  const byKey = new Map<string, { name: string; where: string; us: number }>();
  let total = 0;
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    total += us;
    const { functionName, url, lineNumber } = node.callFrame;
    const file = url
      .replace(/^file:\/\//, '')
      .replace(/^.*\/node_modules\//, 'node_modules/')
      .replace(/^.*\/work\/[^/]+\//, '');
    const name = byFile ? file || `(${functionName || 'native'})` : functionName || '(anonymous)';
    const where = byFile ? '' : file ? `${file}:${lineNumber + 1}` : '';
    const key = `${name}@${where}`;
    const entry = byKey.get(key) ?? { name, where, us: 0 };
    entry.us += us;
    byKey.set(key, entry);
  }
  const entries = [...byKey.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((e) => ({ name: e.name, where: e.where, selfMs: e.us / 1000, share: total ? e.us / total : 0 }));
  return { totalMs: total / 1000, entries };
}

export function formatTop(result: { totalMs: number; entries: TopEntry[] }): string {
  const lines = ['| # | self ms | share | function | where |', '|---:|---:|---:|---|---|'];
  result.entries.forEach((e, i) => {
    lines.push(
      `| ${i + 1} | ${e.selfMs.toFixed(0)} | ${(e.share * 100).toFixed(1)}% | \`${e.name}\` | ${e.where ? `\`${e.where}\`` : ''} |`,
    );
  });
  lines.push('', `Total sampled: ${(result.totalMs / 1000).toFixed(1)} s.`);
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '15' }, 'by-file': { type: 'boolean', default: false } },
  });
  if (positionals.length === 0) {
    process.stderr.write('usage: npx tsx bench/profile-top.ts <file.cpuprofile> [--top 15] [--by-file]\n');
    process.exit(2);
  }
  for (const file of positionals) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    process.stdout.write(
      `${file}\n${formatTop(topSelfTime(profile, Number(values.top), values['by-file']))}\n`,
    );
  }
}
