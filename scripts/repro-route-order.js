'use strict';

/**
 * Reproducer (found by test/e2e_pack.test.js): WorkerPool.send() resolves its recipients
 * later, on the core's router task, while forkApp() registers the new worker at once. So
 *
 *   pool.send({ to: 'app', ... });   // no app worker yet: egg-cluster delivers it to nobody
 *   pool.forkApp(...);               // ... but this worker often receives it
 *
 * which is what makes app worker #1 sometimes get the first agent's `egg-pids` and
 * `agent-start` (Master#onAgentStart sends them, then forkAppWorkers runs). It also lets a
 * later pool.sendToWorker() overtake an earlier pool.send() to the same worker.
 *
 * Usage: node scripts/repro-route-order.js [forks]; prints the counts, exits 1 when seen.
 */

const path = require('path');
const fs = require('fs');
const os = require('os');
const { WorkerPool } = require('../lib/pool');

const N = Number(process.argv[2] || 20);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'repro-route-order-'));
const workerFile = path.join(dir, 'worker.js');
fs.writeFileSync(workerFile, `
const got = [];
process.on('message', m => got.push(m.data));
process.on('message', m => {
  if (m.action === 'report') process.send({ action: 'report', to: 'master', data: { pid: process.pid, got } });
  if (m.action === 'bye') process.exit(0);
});
`);

const pool = new WorkerPool();
const forkedAt = new Map(); // pid → index of the last send made before it was forked
const reports = new Map();

pool.on('message', msg => {
  if (msg.action !== 'report') return;
  reports.set(msg.data.pid, msg.data.got);
  if (reports.size < N) return;
  let early = 0;
  for (const [ pid, got ] of reports) {
    if (got.some(i => typeof i === 'number' && i <= forkedAt.get(pid))) early++;
  }
  // routed send then raw send, alternately, to one worker: must arrive in call order
  const [ first ] = forkedAt.keys();
  const ordered = reports.get(first).filter(i => typeof i === 'string').map(s => Number(s.slice(1)));
  let inversions = 0;
  for (let i = 1; i < ordered.length; i++) if (ordered[i] < ordered[i - 1]) inversions++;
  console.log(`${early}/${N} app workers received a message sent to 'app' before they were forked`);
  console.log(`${inversions} inversions among ${ordered.length} alternating send()/sendToWorker() messages`);
  pool.send({ action: 'bye', to: 'app' });
  setTimeout(() => {
    pool.close();
    fs.rmSync(dir, { recursive: true, force: true });
    process.exit(early || inversions ? 1 : 0);
  }, 500);
});

for (let i = 0; i < N; i++) {
  pool.send({ action: 'seq', to: 'app', data: i });
  forkedAt.set(pool.forkApp({ exec: workerFile, execArgv: [] }).pid, i);
}
setTimeout(() => {
  const [ first ] = [ ...forkedAt.keys() ];
  for (let i = 0; i < 200; i++) {
    pool.send({ action: 'ord', to: 'app', receiverPid: String(first), data: `s${2 * i}` });
    pool.sendToWorker(first, { action: 'ord', data: `s${2 * i + 1}` });
  }
  setTimeout(() => pool.send({ action: 'report', to: 'app' }), 1000);
}, 2000);
