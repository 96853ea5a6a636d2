'use strict';

// Builds the comparison table (text for the terminal, markdown for the README) and the
// PASS/MISS list of the targets from a results object (benchmark/results/*.json).
const MiB = 1024 * 1024;

function metrics(W) {
  const rate = (key, label) => ({ label, unit: 'msg/s', better: 'higher', get: r => r[key] && r[key].msgsPerSec, fmt: fmtRate });
  const mibs = (key, label) => ({ label, unit: 'MiB/s', better: 'higher', get: r => r[key] && r[key].msgsPerSec * (r[key].bytes || (key === 'bcast64k' ? 65536 : MiB)) / MiB, fmt: x => x.toFixed(0) });
  const cpu = (key, label) => ({ label, unit: 'µs/msg', better: 'lower', noLimit: true, get: r => r[key] && r[key].cpuUsPerMsg, fmt: x => x.toFixed(2) });
  return [
    { id: `toApps.${W}`, ...rate('toApps', `agent → ${W} apps, ~100 B`) },
    { id: `toAgent.${W}`, ...rate('toAgent', `${W} apps → agent, ~100 B`) },
    { id: `bcast64k.${W}`, ...mibs('bcast64k', `broadcast 64 KiB → ${W} apps`) },
    { id: `bcast1m.${W}`, ...mibs('bcast1m', `broadcast 1 MiB → ${W} apps`) },
    { id: `rttP50.${W}`, label: 'round trip app → agent → app, p50', unit: 'µs', better: 'lower', get: r => r.rtt && r.rtt.p50, fmt: x => x.toFixed(0) },
    { id: `rttP99.${W}`, label: 'round trip app → agent → app, p99', unit: 'µs', better: 'lower', get: r => r.rtt && r.rtt.p99, fmt: x => x.toFixed(0) },
    { id: `cpu.toApps.${W}`, ...cpu('toApps', 'master CPU / msg: agent → apps') },
    { id: `cpu.toAgent.${W}`, ...cpu('toAgent', 'master CPU / msg: apps → agent') },
    { id: `cpu.rtt.${W}`, ...cpu('rtt', 'master CPU / msg: round trip') },
    { id: `cpu.bcast64k.${W}`, ...cpu('bcast64k', 'master CPU / msg: 64 KiB broadcast') },
    { id: `cpu.bcast1m.${W}`, ...cpu('bcast1m', 'master CPU / msg: 1 MiB broadcast') },
    { id: `cpu.peak64k.${W}`, ...cpu('peak64k', 'master CPU / msg: 64 KiB apps → agent') },
    { id: `ready.${W}`, label: 'start → egg-ready', unit: 'ms', better: 'lower', noLimit: true, get: r => r.readyMs, fmt: x => x.toFixed(0) },
    { id: `rss.${W}`, label: 'master RSS after start', unit: 'MiB', better: 'lower', noLimit: true, get: r => r.rssAfterStartMiB, fmt: x => x.toFixed(1) },
    { id: `peak.${W}`, label: 'master peak RSS, 64 KiB apps → agent burst', unit: 'MiB', better: 'lower', noLimit: true, get: r => r.peak64k && r.peak64k.peakMiB, fmt: x => x.toFixed(1) },
  ];
}

// [metric id, wanted ratio rs/egg-cluster, '<=' | '>=', target text]
const TARGETS = [
  ...[ 2, 4 ].flatMap(W => [
    [ `cpu.toApps.${W}`, 0.1, '<=', 'master CPU per relayed message, small, agent → apps ≤ 1/10' ],
    [ `cpu.toAgent.${W}`, 0.1, '<=', 'master CPU per relayed message, small, apps → agent ≤ 1/10' ],
    [ `cpu.bcast64k.${W}`, 0.2, '<=', 'master CPU per relayed message, 64 KiB broadcast ≤ 1/5' ],
    [ `cpu.peak64k.${W}`, 0.2, '<=', 'master CPU per relayed message, 64 KiB apps → agent ≤ 1/5' ],
  ]),
  [ 'toApps.4', 2, '>=', 'agent → 4 apps throughput ≥ 2×' ],
  [ 'toAgent.2', 2, '>=', 'apps → agent throughput ≥ 2×' ],
  [ 'toAgent.4', 2, '>=', 'apps → agent throughput ≥ 2×' ],
  ...[ 2, 4 ].flatMap(W => [
    [ `rttP50.${W}`, 0.7, '<=', 'round trip p50 ≤ 0.7×' ],
    [ `rttP99.${W}`, 0.7, '<=', 'round trip p99 ≤ 0.7×' ],
  ]),
  [ 'bcast64k.4', 3, '>=', '64 KiB broadcast to 4 apps ≥ 3×' ],
  [ 'bcast1m.4', 3, '>=', '1 MiB broadcast to 4 apps ≥ 3×' ],
  ...[ 2, 4 ].flatMap(W => [
    [ `peak.${W}`, 1 / 3, '<=', 'master peak RSS during 64 KiB burst ≤ 1/3, no drop' ],
    [ `ready.${W}`, 1, '<=', 'start → egg-ready no slower' ],
    [ `rss.${W}`, 0.8, '<=', 'master RSS after start ≤ 0.8×' ],
  ]),
];

function fmtRate(x) {
  return x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)}k` : x.toFixed(0);
}
const fmtRatio = x => (x == null || !isFinite(x) ? '–' : x >= 10 ? `${x.toFixed(0)}×` : `${x.toFixed(2)}×`);

function rows(results) {
  const out = [];
  for (const W of Object.keys(results.runs).map(Number)) {
    const run = results.runs[W];
    for (const m of metrics(W)) {
      const eg = m.get(run['egg-cluster']);
      const rs = m.get(run['egg-cluster-rs']);
      const lim = m.noLimit ? null : m.get(run.limit || {});
      out.push({ W, m, eg, rs, lim, ratio: eg ? rs / eg : null, ofLimit: lim ? (m.better === 'higher' ? rs / lim : lim / rs) : null });
    }
  }
  return out;
}

// Where the CPU goes in each throughput burst: µs of CPU per delivery in the master and in the
// workers (agent + apps, all threads), and what the ratio would be if our master cost nothing
// and the workers' CPU were all that bounds the rate (2 busy cores either way).
const BURSTS = [[ 'toApps', 'agent → apps, ~100 B' ], [ 'toAgent', 'apps → agent, ~100 B' ], [ 'bcast64k', 'broadcast 64 KiB' ], [ 'bcast1m', 'broadcast 1 MiB' ]];

function cpuSplit(results) {
  const out = [];
  for (const W of Object.keys(results.runs).map(Number)) {
    const run = results.runs[W];
    for (const [ key, label ] of BURSTS) {
      const eg = run['egg-cluster'] && run['egg-cluster'][key];
      const rs = run['egg-cluster-rs'] && run['egg-cluster-rs'][key];
      if (!eg || !rs || rs.workersCpuUsPerMsg == null || eg.workersCpuUsPerMsg == null) continue;
      const ratio = rs.msgsPerSec / eg.msgsPerSec;
      const ceiling = ratio * (rs.cpuUsPerMsg + rs.workersCpuUsPerMsg) / rs.workersCpuUsPerMsg;
      const f = x => (x >= 100 ? x.toFixed(0) : x.toFixed(2));
      out.push([ String(W), label, f(eg.cpuUsPerMsg), f(eg.workersCpuUsPerMsg), f(rs.cpuUsPerMsg), f(rs.workersCpuUsPerMsg), fmtRatio(ratio), fmtRatio(ceiling) ]);
    }
  }
  return out;
}

const SPLIT_HEAD = [ 'apps', 'burst', 'egg-cluster master', 'egg-cluster workers', 'rs master', 'rs workers', 'rs / egg-cluster', 'with a master at 0 µs' ];
const SPLIT_LEGEND = 'CPU in µs per delivered message (workers: agent + apps, all threads). The last column scales the measured ratio by (rs master + rs workers) / rs workers: the throughput ratio if our master cost nothing and the workers\' own CPU were the bound, as it is on 2 cores.';

// A table as aligned text (the first `left` columns padded right, the others left) and as
// markdown rows.
function textTable(head, body, left) {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map(b => b[i].length)));
  const line = cells => cells.map((c, i) => (i < left ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [ line(head), line(widths.map(w => '-'.repeat(w))), ...body.map(line) ];
}

function mdTable(head, body, left) {
  return [ `| ${head.join(' | ')} |`, `|${head.map((h, i) => (i < left ? ' --- ' : ' ---: ')).join('|')}|`, ...body.map(b => `| ${b.join(' | ')} |`) ];
}

function build(results) {
  const rs = rows(results);
  const byId = Object.fromEntries(rs.map(r => [ r.m.id, r ]));
  const targets = TARGETS.map(([ id, want, op, text ]) => {
    const r = byId[id];
    const ok = r && r.ratio != null && (op === '<=' ? r.ratio <= want : r.ratio >= want);
    return { id, text: `${text} (${r ? r.W : '?'} apps)`, want: `${op} ${+want.toFixed(3)}`, ratio: r ? r.ratio : null, pass: !!ok };
  });
  const head = [ 'apps', 'metric', 'unit', 'egg-cluster', 'egg-cluster-rs', 'limit', 'rs / egg-cluster', 'rs of limit' ];
  const body = rs.map(r => [
    String(r.W), r.m.label, r.m.unit,
    r.eg == null ? '–' : r.m.fmt(r.eg), r.rs == null ? '–' : r.m.fmt(r.rs), r.lim == null ? '–' : r.m.fmt(r.lim),
    fmtRatio(r.ratio) + (r.ratio == null ? '' : r.m.better === 'higher' ? ' ↑' : ' ↓'),
    r.ofLimit == null ? '–' : `${(r.ofLimit * 100).toFixed(0)}%`,
  ]);
  const m = results.machine;
  const about = `${results.quick ? 'QUICK (smoke) run' : 'Full run'} ${results.date.slice(0, 16).replace('T', ' ')} UTC on ${m.cpus} × ${m.model} (${m.memGiB} GiB), Linux ${m.kernel}, Node ${m.node}; egg ${results.versions.egg}, egg-cluster ${results.versions.eggCluster}, egg-cluster-rs ${results.versions.eggClusterRs}`;
  const legend = '↑ higher is better, ↓ lower is better; "rs of limit": egg-cluster-rs as a share of two plain Node processes over direct IPC (no master). Throughput counts messages delivered (a fan-out to N apps is N deliveries); master CPU is utime+stime of the master per delivered message.';
  const tlines = targets.map(t => `${t.pass ? 'PASS' : 'MISS'}  ${t.text}: ${fmtRatio(t.ratio)} (want ${t.want})`);
  const split = cpuSplit(results);
  const splitText = split.length ? [ '', 'Where the CPU goes in the throughput bursts:', ...textTable(SPLIT_HEAD, split, 2), SPLIT_LEGEND ] : [];
  const splitMd = split.length ? [ '', ...mdTable(SPLIT_HEAD, split, 2), '', SPLIT_LEGEND ] : [];
  const text = [ about, '', ...textTable(head, body, 3), '', legend, ...splitText, '', 'Targets (egg-cluster-rs / egg-cluster, same run):', ...tlines,
    '', `${targets.filter(t => t.pass).length} PASS, ${targets.filter(t => !t.pass).length} MISS` ].join('\n');
  const md = [
    `${about}.`, '',
    ...mdTable(head, body, 3), '', legend, ...splitMd, '',
    '| target | rs / egg-cluster | result |', '| --- | ---: | --- |',
    ...targets.map(t => `| ${t.text}, want ${t.want} | ${fmtRatio(t.ratio)} | ${t.pass ? 'PASS' : 'MISS'} |`), '',
  ].join('\n');
  return { text, markdown: md, targets };
}

module.exports = { build, rows, metrics, fmtRate, cpuSplit };

if (require.main === module) {
  const file = process.argv[2] || require('path').join(__dirname, 'results', 'latest.json');
  console.log(build(JSON.parse(require('fs').readFileSync(file, 'utf8'))).text);
}
