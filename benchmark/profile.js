'use strict';

// Profile one implementation's master under one scenario:
//   node benchmark/profile.js <egg-cluster|egg-cluster-rs> <workers> <scenario> [seconds] [perf args…]
// scenario: toApps | toAgent | bcast64k | bcast1m | peak64k | rtt. Repeats the burst for
// `seconds` while `perf record -g -p <master pid>` runs (perf.data in benchmark/results/logs/),
// then prints `perf report` top entries. With PERF=stat, runs `perf stat` instead.
const path = require('path');
const { spawn, execFileSync } = require('child_process');
const { Cluster, burst, roundTrip, SCENARIOS, CFG } = require('./index');

async function main() {
  const [ impl, workers, scenario, seconds = '10' ] = process.argv.slice(2);
  const c = new Cluster(impl, Number(workers), 17900);
  await c.start();
  const out = path.join(__dirname, 'results', 'logs', `perf-${impl}-${workers}-${scenario}.data`);
  const stat = process.env.PERF === 'stat';
  const perf = spawn('perf', stat ? [ 'stat', '-p', String(c.pid) ] : [ 'record', '-g', '-F', '999', '-o', out, '-p', String(c.pid) ], { stdio: [ 'ignore', 'inherit', 'inherit' ] });
  await new Promise(r => setTimeout(r, 500));
  const end = Date.now() + Number(seconds) * 1000;
  let n = 0;
  let cpu = 0;
  let dl = 0;
  while (Date.now() < end) {
    let r;
    if (scenario === 'rtt') r = await roundTrip(c, 2000, 0);
    else if (scenario === 'peak64k') r = await burst(c, { senders: 'app', via: 'sendToAgent', receivers: 'agent', size: 65536, n: CFG.hwm64PerApp });
    else {
      const s = SCENARIOS.find(x => x.key === scenario);
      r = await burst(c, { ...s, n: s.n() });
    }
    cpu += r.masterCpuUs;
    dl += r.deliveries;
    n++;
  }
  perf.kill('SIGINT');
  await new Promise(r => perf.once('exit', r));
  console.log(`${impl} ×${workers} ${scenario}: ${n} bursts, ${dl} deliveries, master ${(cpu / dl).toFixed(2)} µs CPU/msg`);
  await c.stop();
  if (!stat) {
    console.log(execFileSync('perf', [ 'report', '-i', out, '--no-children', '--percent-limit', '1.5', '--stdio', '-g', 'none', '--sort', 'dso,sym' ], { maxBuffer: 64 * 1024 * 1024 }).toString().split('\n')
      .filter(l => l && !l.startsWith('#'))
      .slice(0, 45)
      .join('\n'));
  }
}

main().catch(err => { console.error(err); process.exit(1); });
