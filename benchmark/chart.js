'use strict';

// Writes an SVG bar chart (by hand, no plotting dependency) from a results JSON:
// egg-cluster-rs's advantage over egg-cluster per metric (higher is better for every bar:
// rs/egg for throughput, egg/rs for times, CPU and memory), log scale, 2 and 4 apps, with
// the issue's target as a tick and the direct-IPC limit as a diamond where there is one.
const fs = require('fs');
const path = require('path');
const { rows } = require('./report');

const TARGET = { toApps: 2, toAgent: 2, bcast64k: 3, bcast1m: 3, rttP50: 1 / 0.7, rttP99: 1 / 0.7,
  'cpu.toApps': 10, 'cpu.toAgent': 10, 'cpu.bcast64k': 5, 'cpu.peak64k': 5, ready: 1, rss: 1.25, peak: 3 };

function esc(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;')
    .replace(/>/g, '&gt;');
}

function svg(results) {
  const all = rows(results);
  const Ws = [ ...new Set(all.map(r => r.W)) ];
  const labels = [ ...new Map(all.map(r => [ r.m.id.replace(/\.\d+$/, ''), r.m.label.replace(/\d+ apps/, 'N apps') ])) ];
  const adv = r => (!(r.eg > 0) || !(r.rs > 0) ? null : r.m.better === 'higher' ? r.rs / r.eg : r.eg / r.rs);
  const limAdv = r => (!(r.lim > 0) || !(r.eg > 0) ? null : r.m.better === 'higher' ? r.lim / r.eg : r.eg / r.lim);
  const vals = all.flatMap(r => [ adv(r), limAdv(r) ]).filter(x => x > 0 && isFinite(x));
  const lo = 2 ** Math.floor(Math.log2(Math.min(0.5, ...vals)));
  const hi = 2 ** Math.ceil(Math.log2(Math.max(16, ...vals)));
  const left = 330;
  const width = 980;
  const plotW = width - left - 40;
  const barH = 9;
  const rowH = Ws.length * (barH + 2) + 10;
  const top = 70;
  const height = top + labels.length * rowH + 70;
  const x = v => left + (Math.log2(v) - Math.log2(lo)) / (Math.log2(hi) - Math.log2(lo)) * plotW;
  const colors = [ '#4e79a7', '#f28e2b', '#59a14f', '#e15759' ];
  const o = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  o.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);
  o.push(`<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">egg-cluster-rs vs egg-cluster 2.x — advantage per metric (higher is better, log scale)</text>`);
  const m = results.machine;
  o.push(`<text x="${width / 2}" y="40" text-anchor="middle" fill="#555">${esc(`${results.date.slice(0, 10)}, ${m.cpus} × ${m.model}, Node ${m.node}${results.quick ? ', QUICK run' : ''}`)}</text>`);
  labels.forEach((_, i) => {
    if (i % 2) o.push(`<rect x="0" y="${top + i * rowH - 4}" width="${width}" height="${rowH}" fill="#f6f6f6"/>`);
  });
  for (let v = lo; v <= hi; v *= 2) {
    o.push(`<line x1="${x(v)}" y1="${top - 8}" x2="${x(v)}" y2="${height - 55}" stroke="${v === 1 ? '#333' : '#ddd'}" stroke-width="${v === 1 ? 1.5 : 1}"/>`);
    o.push(`<text x="${x(v)}" y="${height - 40}" text-anchor="middle" fill="#333">${v >= 1 ? v : `1/${1 / v}`}×</text>`);
  }
  labels.forEach(([ key, label ], i) => {
    const y0 = top + i * rowH;
    o.push(`<text x="${left - 8}" y="${y0 + rowH / 2}" text-anchor="end" dominant-baseline="middle">${esc(label)}</text>`);
    Ws.forEach((W, j) => {
      const r = all.find(q => q.W === W && q.m.id === `${key}.${W}`);
      const a = r && adv(r);
      const y = y0 + j * (barH + 2);
      if (a > 0) {
        const x0 = x(1);
        const x1 = x(Math.min(Math.max(a, lo), hi));
        o.push(`<rect x="${Math.min(x0, x1)}" y="${y}" width="${Math.max(1, Math.abs(x1 - x0))}" height="${barH}" fill="${colors[j]}"><title>${esc(`${r.m.label} (${W} apps): ${a.toFixed(2)}×`)}</title></rect>`);
        o.push(`<text x="${Math.max(x0, x1) + 4}" y="${y + barH - 1}" font-size="10" fill="#333">${a.toFixed(a >= 10 ? 0 : 2)}×</text>`);
      }
      const l = r && limAdv(r);
      if (l > 0) {
        const lx = x(Math.min(Math.max(l, lo), hi));
        o.push(`<path d="M${lx} ${y - 1} l4 ${barH / 2 + 1} l-4 ${barH / 2 + 1} l-4 ${-barH / 2 - 1} z" fill="#999"><title>${esc(`limit (direct IPC), ${W} apps: ${l.toFixed(2)}× egg-cluster`)}</title></path>`);
      }
    });
    const t = TARGET[key];
    if (t) o.push(`<line x1="${x(t)}" y1="${y0 - 3}" x2="${x(t)}" y2="${y0 + Ws.length * (barH + 2) + 1}" stroke="#c00" stroke-width="2"/>`);
  });
  const ly = height - 18;
  let lx = 40;
  Ws.forEach((W, j) => {
    o.push(`<rect x="${lx}" y="${ly - 9}" width="12" height="10" fill="${colors[j]}"/><text x="${lx + 16}" y="${ly}">${W} app workers</text>`);
    lx += 130;
  });
  o.push(`<path d="M${lx + 5} ${ly - 10} l5 6 l-5 6 l-5 -6 z" fill="#999"/><text x="${lx + 14}" y="${ly}">limit: two Node processes over direct IPC</text>`);
  lx += 290;
  o.push(`<line x1="${lx}" y1="${ly - 10}" x2="${lx}" y2="${ly + 2}" stroke="#c00" stroke-width="2"/><text x="${lx + 6}" y="${ly}">target</text>`);
  o.push('</svg>');
  return o.join('\n') + '\n';
}

function write(results, file) {
  fs.writeFileSync(file, svg(results));
}

module.exports = { svg, write };

if (require.main === module) {
  const src = process.argv[2] || path.join(__dirname, 'results', 'latest.json');
  const dst = process.argv[3] || path.join(__dirname, 'results', 'chart.svg');
  write(JSON.parse(fs.readFileSync(src, 'utf8')), dst);
  console.log(`wrote ${dst}`);
}
