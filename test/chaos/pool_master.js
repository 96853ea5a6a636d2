'use strict';

// A master for test/queue_cap.test.js: a WorkerPool (options from argv) with an agent and app
// workers running test/fixtures/pool/worker.js, forked by the test with an IPC channel so
// that its memory and fds are its own (/proc/<pid>) and the test is its parent.
//
// argv[2]: JSON { apps, pool, keepOnDisconnect }
// From the parent, {action: 'qc', data: {op, ...}}:
//   ctl {pid, ctl}            run a worker.js op in worker `pid`
//   flood {action, count, bytes, to, from}
//                             `count` messages {action, data: {i, chunk}, to} through
//                             pool.send (the master's own sends) — answered 'flooded'
//   counts {action}           how many 'got' reports of `action` each worker sent
//   workers                   pool.workers()
// To the parent: 'ready' {pid, agent, apps}, 'pool-error' {code, pid, message}, 'blocking',
// and the answers above (action 'qc-answer' {op, ...}).
// keepOnDisconnect: when the parent goes, keep sending to it (and to dead workers) through
// every path, then print `survived {...}` on stdout and exit 0; an exception exits 1.

const { EventEmitter } = require('events');
const path = require('path');
const { WorkerPool } = require('../../lib/pool');
const { Messenger } = require('../../lib/messenger');

const config = JSON.parse(process.argv[2] || '{}');
const WORKER = path.join(__dirname, '..', 'fixtures', 'pool', 'worker.js');

const master = new EventEmitter();
const pool = new WorkerPool(config.pool || {});
const messenger = new Messenger(master, pool);
const counts = new Map(); // action → Map(pid → n)
const pending = new Map();
const dead = []; // pids of workers that exited

function toParent(action, data) {
  if (process.connected) process.send({ action, data });
}

pool.on('error', err => toParent('pool-error', { code: err.code, pid: err.pid, message: err.message }));
pool.on('exit', w => dead.push(w.pid));
pool.on('message', msg => {
  if (!msg || !msg.data) return;
  if (msg.action === 'ready') {
    const resolve = pending.get(msg.data.pid);
    if (resolve) resolve();
  } else if (msg.action === 'got') {
    const action = msg.data.msg && msg.data.msg.action;
    if (!counts.has(action)) counts.set(action, new Map());
    const byPid = counts.get(action);
    byPid.set(msg.data.pid, (byPid.get(msg.data.pid) || 0) + 1);
  } else if (msg.action === 'blocking') {
    toParent('blocking', msg.data);
  }
});

const ops = {
  ctl({ pid, ctl }) {
    pool.sendToWorker(pid, { action: 'ctl', data: ctl });
  },
  flood({ action, count, bytes, to }) {
    const chunk = 'q'.repeat(bytes || 1);
    const start = Date.now();
    // over 64 KiB a string: worker.js then reports a digest instead of echoing it back
    const big = chunk.length > 65536;
    for (let i = 0; i < count; i++) pool.send({ action, data: big ? `${i}:${chunk}` : { i, chunk }, to: to || 'app' });
    return { took: Date.now() - start };
  },
  counts({ action }) {
    return { counts: Object.fromEntries(counts.get(action) || []) };
  },
  workers() {
    return { workers: pool.workers() };
  },
  // a full collection (the test forks this script with --expose-gc), then the RSS
  gc() {
    if (typeof global.gc === 'function') global.gc();
    return { rss: process.memoryUsage().rss, heapUsed: process.memoryUsage().heapUsed };
  },
};

process.on('message', msg => {
  if (!msg || msg.action !== 'qc' || !msg.data) return;
  const op = ops[msg.data.op];
  const answer = op ? op(msg.data) : { error: `unknown op ${msg.data.op}` };
  if (answer) toParent('qc-answer', Object.assign({ op: msg.data.op, token: msg.data.token }, answer));
});

function fork(kind) {
  const ref = kind === 'agent' ? pool.forkAgent({ exec: WORKER }) : pool.forkApp({ exec: WORKER });
  return new Promise(resolve => pending.set(ref.pid, resolve)).then(() => ref);
}

(async () => {
  const agent = await fork('agent');
  const apps = [];
  for (let i = 0; i < (config.apps || 2); i++) apps.push(await fork('app'));
  toParent('ready', { pid: process.pid, agent, apps });
})();

process.on('disconnect', () => {
  if (!config.keepOnDisconnect) {
    pool.close();
    process.exit(0);
    return;
  }
  // the parent is gone: every way of sending to it, and to workers that are gone, must not throw
  const tried = [];
  const attempt = (name, fn) => {
    fn();
    tried.push(name);
  };
  setTimeout(() => {
    attempt('messenger.sendToParent', () => messenger.sendToParent({ action: 'to-parent', data: 1 }));
    attempt('messenger.send to parent', () => messenger.send({ action: 'to-parent', data: 2, to: 'parent' }));
    attempt('pool.send to parent', () => pool.send({ action: 'to-parent', data: 3, to: 'parent' }));
    for (const w of pool.workers()) {
      // the workers send to the parent as well, through the master
      attempt('worker to parent', () => pool.sendToWorker(w.pid, {
        action: 'ctl', data: { op: 'burst', action: 'to-parent', count: 200, to: 'parent' },
      }));
    }
    // a worker that is gone
    const victim = pool.workers().find(w => w.kind === 'app');
    if (victim) process.kill(victim.pid, 'SIGKILL');
    setTimeout(async () => {
      for (const pid of dead) {
        attempt('sendToWorker(dead)', () => pool.sendToWorker(pid, { action: 'x' }));
        attempt('messenger.sendTo(dead)', () => messenger.sendTo(pid, 'x', 1));
        attempt('pool.kill(dead)', () => pool.kill(pid));
        attempt('pool.disconnect(dead)', () => pool.disconnect(pid));
        await pool.terminate(pid, 100);
        tried.push('pool.terminate(dead)');
      }
      attempt('messenger.broadcast', () => messenger.broadcast('x', 1));
      setTimeout(() => {
        process.stdout.write(`survived ${JSON.stringify({ tried, dead, workers: pool.workers().length })}\n`);
        pool.close();
        process.exit(0);
      }, 500);
    }, 500);
  }, 100);
});
