'use strict';

// npm run bench [-- --quick] [-- --egg4]
//
// egg-cluster 2.x and egg-cluster-rs side by side on the same egg 3 app (benchmark/app), in the
// same run on the same machine, plus a reference run of two plain Node processes talking over
// Node's IPC directly (the limit). Each cluster's master is a child of this driver
// (benchmark/master.js) with an IPC channel; the driver commands the workers through the master
// (messages from the parent) and the workers report back `to: 'parent'`. Every message is
// counted and sequence-checked on arrival; a lost or reordered message fails the run.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { fork, execFileSync } = require('child_process');
const { now, sleep, cpuUs, mem, resetPeak, pin, allCpus, median, snapshot } = require('./lib');
const report = require('./report');

const quick = process.argv.includes('--quick');
// --egg4: the same run on egg 4, with @eggjs/cluster 3.x in the egg-cluster column
const egg4 = process.argv.includes('--egg4');
if (egg4) process.env.BENCH_EGG = '4';
const IMPLS = [ 'egg-cluster', 'egg-cluster-rs' ];
const WORKERS = [ 2, 4 ];
const KiB = 1024;
const SMALL = 40; // payload chars: with the envelope a message is ~100 bytes on the wire
const CFG = quick
  ? { reps: 1, starts: 1, small: 5000, b64: 100, b1m: 10, hwm64PerApp: 100, rtt: 300, warmup: 50, timeout: 60000 }
  : { reps: 5, starts: 3, small: 20000, b64: 1000, b1m: 100, hwm64PerApp: 500, rtt: 10000, warmup: 500, timeout: 180000 };

const resultsDir = path.join(__dirname, 'results');
const logDir = path.join(resultsDir, 'logs');
fs.mkdirSync(logDir, { recursive: true });

let nextId = 1;
let frozen = null; // the copy of egg-cluster-rs this run uses (see snapshot in lib.js)
const T0 = Date.now();
const log = (...a) => console.log(`[bench +${((Date.now() - T0) / 1000).toFixed(0)}s]`, ...a);

class BenchError extends Error {}

/** one egg cluster: its master forked from benchmark/master.js */
class Cluster {
  constructor(impl, workers, port) {
    Object.assign(this, { impl, workers, port, pids: { agent: 0, apps: [] } });
  }

  async start() {
    const out = fs.openSync(path.join(logDir, `${this.impl}-${this.workers}.log`), 'w');
    const t0 = now();
    this.child = fork(path.join(__dirname, 'master.js'), [ this.impl, this.workers, this.port ], {
      stdio: [ 'ignore', out, out, 'ipc' ],
      execArgv: [],
      env: { ...process.env, EGG_SERVER_ENV: 'prod', NODE_ENV: 'production', ...(frozen ? { BENCH_RS_DIR: frozen.dir } : {}) },
    });
    fs.closeSync(out);
    this.child.setMaxListeners(0);
    this.exited = new Promise(r => this.child.once('exit', (code, signal) => { this.dead = { code, signal }; r(); }));
    await this.waitFor('egg-ready', null, 1, 120000);
    this.readyMs = (now() - t0) / 1e3;
    this.pid = this.child.pid;
    const hi = this.waitFor('bench:hi', null, this.workers + 1, 30000);
    this.send('bench:hello', {}, 'app');
    this.send('bench:hello', {}, 'agent');
    for (const h of await hi) {
      if (h.role === 'agent') this.pids.agent = h.pid;
      else this.pids.apps.push(h.pid);
    }
    if (!this.pids.agent || this.pids.apps.length !== this.workers) throw new BenchError(`${this.impl}: bad hello ${JSON.stringify(this.pids)}`);
    // CPU spent to get there: the master, and the agent + app workers
    this.masterCpuAtReadyMs = cpuUs(this.pid) / 1e3;
    this.workersCpuAtReadyMs = [ this.pids.agent, ...this.pids.apps ].reduce((a, p) => a + cpuUs(p), 0) / 1e3;
    await sleep(1000); // settle, then the master's RSS "after start"
    this.rssAfterStartKiB = mem(this.pid).rss;
    log(`${this.impl} ×${this.workers}: egg-ready in ${this.readyMs.toFixed(0)} ms (CPU: master ${this.masterCpuAtReadyMs.toFixed(0)} ms, workers ${this.workersCpuAtReadyMs.toFixed(0)} ms), master ${this.pid} RSS ${(this.rssAfterStartKiB / KiB).toFixed(1)} MiB, agent ${this.pids.agent}, apps ${this.pids.apps.join(',')}`);
  }

  send(action, data, to) {
    this.child.send({ action, data, to });
  }

  waitFor(action, id, count, timeout) {
    return new Promise((resolve, reject) => {
      const got = [];
      let t = null;
      let h = null;
      let onExit = null;
      const cleanup = () => { clearTimeout(t); this.child.off('message', h); this.child.off('exit', onExit); };
      h = m => {
        if (m && m.action === action && (id == null || (m.data && m.data.id === id))) {
          got.push(m.data);
          if (got.length === count) { cleanup(); resolve(got); }
        }
      };
      onExit = (code, signal) => { cleanup(); reject(new BenchError(`${this.impl}: master exited (${code}, ${signal}) waiting for ${action}`)); };
      t = setTimeout(() => {
        cleanup();
        reject(Object.assign(new BenchError(`${this.impl} ×${this.workers}: timeout waiting for ${count}× ${action} (got ${got.length})`), { got }));
      }, timeout);
      this.child.on('message', h);
      this.child.on('exit', onExit);
    });
  }

  allPids() {
    return [ this.pid, this.pids.agent, ...this.pids.apps ].filter(Boolean);
  }

  async stop() {
    if (!this.child || this.dead) return;
    this.child.kill('SIGTERM');
    const killed = await Promise.race([ this.exited.then(() => false), sleep(30000).then(() => true) ]);
    for (const pid of this.allPids()) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    if (killed) log(`${this.impl}: master did not exit within 30 s of SIGTERM; killed`);
  }
}

/**
 * utime+stime of the agent and the app workers together, µs
 * @param {Cluster} c -
 * @return {number} -
 */
function workersCpuUs(c) {
  return [ c.pids.agent, ...c.pids.apps ].reduce((a, p) => a + cpuUs(p), 0);
}

/**
 * One burst: `senders` ('agent' | 'app') each send n messages with messenger[via]; every
 * receiver counts them (in order per sender) and reports its last arrival time.
 * @param c
 * @param root0
 * @param root0.senders
 * @param root0.via
 * @param root0.receivers
 * @param root0.n
 * @param root0.size
 * @param root0.peak
 */
async function burst(c, { senders, via, receivers, n, size, peak }) {
  const id = nextId++;
  const nSend = senders === 'app' ? c.workers : 1;
  const nRecv = receivers === 'app' ? c.workers : 1;
  const armed = c.waitFor('bench:armed', id, nRecv, 30000);
  c.send('bench:arm', { id, role: receivers, senders: nSend, n }, receivers);
  await armed;
  let peakOk = false;
  if (peak) peakOk = resetPeak(c.pid);
  let maxRss = 0;
  const sampler = peak ? setInterval(() => { try { maxRss = Math.max(maxRss, mem(c.pid).rss); } catch { /* */ } }, 20) : null;
  const done = c.waitFor('bench:done', id, nRecv, CFG.timeout);
  const sent = c.waitFor('bench:sent', id, nSend, CFG.timeout);
  const cpu0 = cpuUs(c.pid);
  const wcpu0 = workersCpuUs(c);
  c.send('bench:go', { id, role: senders, via, n, size }, senders);
  let res;
  try {
    res = await done;
  } catch (err) {
    if (!(err instanceof BenchError) || c.dead) throw err;
    const st = c.waitFor('bench:status', null, nRecv, 10000).catch(() => []);
    c.send('bench:status', {}, receivers);
    const status = await st;
    throw new BenchError(`${err.message}: messages LOST — receivers saw ${JSON.stringify(status)}`);
  } finally {
    if (sampler) clearInterval(sampler);
  }
  const cpu1 = cpuUs(c.pid);
  const wcpu1 = workersCpuUs(c);
  const m = peak ? mem(c.pid) : null;
  const s = await sent;
  const errors = res.reduce((a, r) => a + r.errors + r.stray, 0);
  if (errors) throw new BenchError(`${c.impl} ×${c.workers}: ${errors} messages out of order or stray: ${JSON.stringify(res.filter(r => r.errors || r.stray))}`);
  const deliveries = n * nSend * nRecv;
  const got = res.reduce((a, r) => a + r.got, 0);
  if (got !== deliveries) throw new BenchError(`${c.impl}: got ${got} of ${deliveries}`);
  const t0 = Math.min(...s.map(x => x.t0));
  const tEnd = Math.max(...res.map(r => r.tLast));
  const out = { deliveries, seconds: (tEnd - t0) / 1e6, masterCpuUs: cpu1 - cpu0, workersCpuUs: wcpu1 - wcpu0 };
  if (peak) Object.assign(out, { peakKiB: peakOk ? m.hwm : maxRss, peakSource: peakOk ? 'VmHWM' : 'sampled VmRSS', sampledMaxRssKiB: maxRss });
  return out;
}

async function roundTrip(c, n, warmup) {
  const id = nextId++;
  const pids = c.allPids();
  pin(pids, '0');
  try {
    const done = c.waitFor('bench:rtt-done', id, 1, CFG.timeout);
    const cpu0 = cpuUs(c.pid);
    c.send('bench:rtt', { id, pid: c.pids.apps[0], agentPid: c.pids.agent, n, warmup, size: SMALL }, 'app');
    const [ r ] = await done;
    const cpu1 = cpuUs(c.pid);
    if (r.errors) throw new BenchError(`${c.impl}: ${r.errors} round trips out of order`);
    return { ...r, deliveries: 2 * (n + warmup), masterCpuUs: cpu1 - cpu0 };
  } finally {
    pin(pids, allCpus);
  }
}

const SCENARIOS = [
  { key: 'toApps', label: 'agent → all apps (sendToApp), ~100 B', senders: 'agent', via: 'sendToApp', receivers: 'app', size: SMALL, n: () => CFG.small },
  { key: 'toAgent', label: 'apps → agent (sendToAgent), ~100 B', senders: 'app', via: 'sendToAgent', receivers: 'agent', size: SMALL, n: () => CFG.small },
  { key: 'bcast64k', label: 'broadcast 64 KiB to all apps', senders: 'agent', via: 'sendToApp', receivers: 'app', size: 64 * KiB, n: () => CFG.b64 },
  { key: 'bcast1m', label: 'broadcast 1 MiB to all apps', senders: 'agent', via: 'sendToApp', receivers: 'app', size: KiB * KiB, n: () => CFG.b1m },
];

/** the reference run: benchmark/limit.js, a plain Node parent and its forked children */
class Limit {
  constructor(workers) {
    this.workers = workers;
  }

  async start() {
    this.child = fork(path.join(__dirname, 'limit.js'), [], { stdio: 'inherit', execArgv: [] });
    await this.call('setup', { workers: this.workers });
  }

  call(cmd, args) {
    return new Promise((resolve, reject) => {
      this.child.once('message', m => (m.action === 'limit:result' ? resolve(m.data) : reject(new BenchError(`limit: ${m.data.message}`))));
      this.child.send({ cmd, args });
    });
  }

  async burst(s) {
    const x = await this.call(s.senders === 'agent' ? 'toApps' : 'toAgent', { id: nextId++, n: s.n(), size: s.size, timeout: CFG.timeout });
    if (x.errors || x.got !== x.deliveries) throw new BenchError(`limit ${s.key}: ${x.errors} out of order, got ${x.got} of ${x.deliveries}`);
    return x;
  }

  async stop() {
    if (!this.child) return;
    await Promise.race([ this.call('teardown', {}).catch(() => {}), sleep(10000) ]);
    this.child.kill();
  }
}

const rotate = (xs, i) => xs.map((_, j) => xs[(i + j) % xs.length]);
const pct = (sorted, f) => sorted[Math.min(sorted.length - 1, Math.floor(f * sorted.length))];

/**
 * All measurements for one worker count. Both clusters (and the limit's processes) are up at
 * the same time, idle but for the one being measured, and the repetitions of every scenario
 * take turns between them (egg-cluster, egg-cluster-rs, limit, then rotated), so that the
 * background load of a shared machine falls on all of them alike.
 * @param workers
 * @param port
 */
async function runWorkers(workers, port) {
  const order = workers === WORKERS[0] ? IMPLS : [ ...IMPLS ].reverse(); // who starts first alternates
  const clusters = {};
  const limit = new Limit(workers);
  const r = { limit: {} };
  try {
    // start → egg-ready and RSS after start: medians of CFG.starts starts taking turns; the
    // last start of each stays up for the message scenarios
    const starts = Object.fromEntries(IMPLS.map(k => [ k, []]));
    for (let i = 0; i < CFG.starts; i++) {
      for (const impl of rotate(order, i)) {
        const c = new Cluster(impl, workers, port++);
        await c.start();
        starts[impl].push({ readyMs: c.readyMs, rssAfterStartMiB: c.rssAfterStartKiB / KiB, masterCpuMs: c.masterCpuAtReadyMs, workersCpuMs: c.workersCpuAtReadyMs });
        if (i < CFG.starts - 1) await c.stop();
        else clusters[impl] = c;
      }
    }
    for (const impl of IMPLS) {
      r[impl] = { readyMs: median(starts[impl].map(x => x.readyMs)), rssAfterStartMiB: median(starts[impl].map(x => x.rssAfterStartMiB)), starts: starts[impl], masterPid: clusters[impl].pid };
    }
    log(`×${workers} start → egg-ready (median of ${CFG.starts}): ${IMPLS.map(k => `${k} ${r[k].readyMs.toFixed(0)} ms`).join(', ')}`);
    await limit.start();
    const sides = [ ...IMPLS, 'limit' ];
    for (const s of SCENARIOS) {
      const runs = Object.fromEntries(sides.map(k => [ k, []]));
      for (let i = 0; i < CFG.reps; i++) {
        for (const side of rotate(sides, i)) {
          runs[side].push(side === 'limit' ? await limit.burst(s) : await burst(clusters[side], { ...s, n: s.n() }));
        }
      }
      for (const side of sides) {
        const rates = runs[side].map(x => x.deliveries / x.seconds);
        const out = r[side][s.key] = { msgsPerSec: median(rates), rates, bytes: s.size, deliveriesPerRep: runs[side][0].deliveries };
        if (side !== 'limit') {
          const dl = runs[side].reduce((a, x) => a + x.deliveries, 0);
          out.cpuUsPerMsg = runs[side].reduce((a, x) => a + x.masterCpuUs, 0) / dl;
          out.workersCpuUsPerMsg = runs[side].reduce((a, x) => a + x.workersCpuUs, 0) / dl; // agent + apps
        }
      }
      log(`×${workers} ${s.label}: ${sides.map(k => `${k} ${fmtRate(r[k][s.key].msgsPerSec)}/s${r[k][s.key].cpuUsPerMsg != null ? ` (master ${r[k][s.key].cpuUsPerMsg.toFixed(2)} µs/msg)` : ''}`).join(', ')}`);
    }
    // round trips, in `reps` chunks taking turns; percentiles over all samples
    const chunk = Math.ceil(CFG.rtt / CFG.reps);
    const trips = Object.fromEntries(sides.map(k => [ k, { samples: [], cpu: 0, deliveries: 0 }]));
    for (let i = 0; i < CFG.reps; i++) {
      for (const side of rotate(sides, i)) {
        const x = side === 'limit'
          ? await limit.call('rtt', { id: nextId++, n: chunk, warmup: CFG.warmup, size: SMALL })
          : await roundTrip(clusters[side], chunk, CFG.warmup);
        if (x.errors) throw new BenchError(`${side}: ${x.errors} round trips out of order`);
        trips[side].samples.push(...x.samples);
        trips[side].cpu += x.masterCpuUs || 0;
        trips[side].deliveries += x.deliveries || 0;
      }
    }
    for (const side of sides) {
      const t = trips[side];
      const sorted = t.samples.sort((a, b) => a - b);
      r[side].rtt = { n: sorted.length, p50: pct(sorted, 0.5), p90: pct(sorted, 0.9), p99: pct(sorted, 0.99), max: sorted[sorted.length - 1],
        mean: sorted.reduce((a, b) => a + b, 0) / sorted.length };
      if (side !== 'limit') r[side].rtt.cpuUsPerMsg = t.cpu / t.deliveries;
    }
    log(`×${workers} round trip p50 / p99: ${sides.map(k => `${k} ${r[k].rtt.p50.toFixed(0)} / ${r[k].rtt.p99.toFixed(0)} µs`).join(', ')}`);
    // master peak RSS (VmHWM, reset before each) during a 64 KiB apps → agent burst: the
    // highest of CFG.starts bursts taking turns
    const peaks = Object.fromEntries(IMPLS.map(k => [ k, []]));
    for (let i = 0; i < CFG.starts; i++) {
      for (const impl of rotate(order, i)) {
        peaks[impl].push(await burst(clusters[impl], { senders: 'app', via: 'sendToAgent', receivers: 'agent', size: 64 * KiB, n: CFG.hwm64PerApp, peak: true }));
      }
    }
    for (const impl of IMPLS) {
      const ps = peaks[impl];
      const deliveries = ps.reduce((a, x) => a + x.deliveries, 0);
      r[impl].peak64k = { peakMiB: Math.max(...ps.map(x => x.peakKiB)) / KiB, peaksMiB: ps.map(x => x.peakKiB / KiB), source: ps[0].peakSource,
        sampledMaxRssMiB: Math.max(...ps.map(x => x.sampledMaxRssKiB)) / KiB, msgsPerSec: median(ps.map(x => x.deliveries / x.seconds)),
        deliveries, cpuUsPerMsg: ps.reduce((a, x) => a + x.masterCpuUs, 0) / deliveries, dropped: 0 };
      log(`${impl} ×${workers} 64 KiB apps → agent bursts: master peak RSS ${r[impl].peak64k.peaksMiB.map(x => x.toFixed(1)).join(' / ')} MiB (${ps[0].peakSource}), all ${deliveries} delivered in order`);
    }
    return r;
  } finally {
    for (const impl of order) if (clusters[impl]) await clusters[impl].stop();
    await limit.stop();
  }
}

function fmtRate(x) {
  return x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)}k` : x.toFixed(0);
}

async function main() {
  const started = new Date();
  const t0 = Date.now();
  const sha = (() => { try { return execFileSync('git', [ 'rev-parse', '--short', 'HEAD' ], { cwd: path.join(__dirname, '..') }).toString().trim(); } catch { return '?'; } })();
  const dirty = (() => {
    try {
      return execFileSync('git', [ 'status', '--porcelain', 'src', 'lib', 'index.js' ], { cwd: path.join(__dirname, '..') }).toString().trim()
        .split('\n')
        .filter(Boolean).length;
    } catch { return 0; }
  })();
  const addon = path.join(__dirname, '..', 'egg-cluster-rs.linux-x64-gnu.node');
  if (!process.argv.includes('--live')) frozen = snapshot(path.join(__dirname, '..'));
  const results = {
    date: started.toISOString(),
    quick,
    config: CFG,
    machine: {
      cpus: os.cpus().length, model: os.cpus()[0].model, memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
      kernel: os.release(), node: process.version, loadavg: os.loadavg(),
    },
    versions: {
      eggCluster: egg4 ? `@eggjs/cluster ${require('@eggjs/cluster/package.json').version}` : require('egg-cluster/package.json').version,
      egg: require(egg4 ? 'egg4/package.json' : 'egg/package.json').version,
      eggClusterRs: `${require('../package.json').version} (${sha}${dirty ? `, ${dirty} files of src/ lib/ modified in the work tree` : ''})`,
      addonBuilt: fs.existsSync(addon) ? fs.statSync(addon).mtime.toISOString() : null,
      addonSha256: frozen ? frozen.sha256 : null,
      frozenCopy: frozen ? path.relative(path.join(__dirname, '..'), frozen.dir) : 'no (--live)',
    },
    runs: {},
  };
  log(`${quick ? 'quick' : 'full'} run on ${results.machine.cpus} × ${results.machine.model}, node ${process.version}, egg ${results.versions.egg}, egg-cluster ${results.versions.eggCluster}, egg-cluster-rs ${results.versions.eggClusterRs}`);
  let port = 17101;
  for (const workers of WORKERS) {
    results.runs[workers] = await runWorkers(workers, port);
    port += 20;
  }
  results.durationSec = (Date.now() - t0) / 1000;
  results.machine.loadavgAtEnd = os.loadavg();
  const builtAtEnd = fs.existsSync(addon) ? fs.statSync(addon).mtime.toISOString() : null;
  if (builtAtEnd !== results.versions.addonBuilt) {
    results.versions.addonRebuiltDuringRun = builtAtEnd;
    log(`${frozen ? 'note' : 'WARNING'}: the addon was rebuilt during the run (${results.versions.addonBuilt} → ${builtAtEnd}); ${frozen ? 'this run used the copy taken at its start' : 'masters started after that ran the new build'}`);
  }
  const { text, markdown, targets } = report.build(results);
  results.targets = targets;
  const suffix = egg4 ? '-egg4' : '';
  const file = path.join(resultsDir, `${quick ? 'quick' : 'latest'}${suffix}.json`);
  fs.writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
  fs.writeFileSync(path.join(resultsDir, `${quick ? 'quick' : 'latest'}${suffix}.md`), markdown);
  require('./chart').write(results, path.join(resultsDir, `${quick ? 'quick' : 'chart'}${suffix}.svg`));
  console.log('\n' + text);
  log(`results: ${path.relative(process.cwd(), file)} (${results.durationSec.toFixed(0)} s)`);
}

module.exports = { Cluster, burst, roundTrip, SCENARIOS, CFG, BenchError };

if (require.main === module) {
  main().catch(err => {
    console.error(`\n[bench] FAILED: ${err.message}`);
    if (!(err instanceof BenchError)) console.error(err.stack);
    process.exit(1);
  });
}
