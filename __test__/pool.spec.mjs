// WorkerPool (lib/pool.js) from JavaScript: option validation and the shape
// of what it returns and emits, with real `node` children.
// Tests run serially: most fork node children, and a loaded 2-core machine
// starting dozens of them at once turns waits into timeouts.

import test from 'ava';
import net from 'node:net';
import { createRequire } from 'node:module';
import { types } from 'node:util';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { WorkerPool } = require('../lib/pool.js');
const eggCluster = require('../index.js');

const WORKER = fileURLToPath(new URL('../test/fixtures/pool/worker.js', import.meta.url));

function pool(t, options) {
  const p = new WorkerPool(options);
  t.teardown(() => p.close());
  return p;
}

function once(emitter, event, match = () => true, timeout = 20000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.removeListener(event, listener);
      reject(new Error(`timed out waiting for ${event}`));
    }, timeout);
    function listener(...args) {
      if (!match(...args)) return;
      clearTimeout(timer);
      emitter.removeListener(event, listener);
      resolve(args);
    }
    emitter.on(event, listener);
  });
}

const ready = (p, pid) => once(p, 'message', msg => msg.action === 'ready' && msg.data.pid === pid)
  .then(([ msg ]) => msg.data);

test.serial('the package exports exactly @eggjs/cluster\'s four names, and the core\'s classes from egg-cluster-rs/core', t => {
  // egg 4 re-exports every name of its cluster package and checks its own export list
  t.deepEqual(Object.keys(eggCluster).sort(), [ 'ClusterAgentWorkerError', 'ClusterWorkerExceptionError', 'Master', 'startCluster' ]);
  t.true(types.isAsyncFunction(eggCluster.startCluster), '@eggjs/mock 6 checks util.types.isAsyncFunction');
  const core = require('egg-cluster-rs/core');
  t.deepEqual(Object.keys(core).sort(), [ 'Messenger', 'WorkerMessenger', 'WorkerPool' ]);
  t.is(core.WorkerPool, WorkerPool);
});

test.serial('the ESM entry exports the same four names, startCluster an async function', async t => {
  const esm = await import('egg-cluster-rs');
  t.deepEqual(Object.keys(esm).sort(), [ 'ClusterAgentWorkerError', 'ClusterWorkerExceptionError', 'Master', 'startCluster' ]);
  t.true(types.isAsyncFunction(esm.startCluster));
  t.true(new esm.ClusterWorkerExceptionError(0, 2) instanceof eggCluster.ClusterWorkerExceptionError);
});

test.serial('an unknown schedulingPolicy is a TypeError with code ERR_INVALID_ARG_VALUE', t => {
  for (const schedulingPolicy of [ 'random', 'shared' ]) {
    t.throws(() => new WorkerPool({ schedulingPolicy }),
      { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE', message: /schedulingPolicy/ });
  }
});

for (const bad of [ 0, -1, Number.NaN, Infinity, 0.5, '1048576' ]) {
  test.serial(`maxLineBytes ${typeof bad === 'string' ? JSON.stringify(bad) : String(bad)} is a TypeError with code ERR_INVALID_ARG_VALUE`, t => {
    t.throws(() => new WorkerPool({ maxLineBytes: bad }),
      { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE', message: /maxLineBytes/ });
  });
}

test.serial('queueBytes 0 is refused', t => {
  t.throws(() => new WorkerPool({ queueBytes: 0 }), { code: 'ERR_INVALID_ARG_VALUE', message: /queueBytes/ });
});

test.serial('an unknown deathSignal is refused', t => {
  t.throws(() => new WorkerPool({ deathSignal: 'SIGNOPE' }), { message: /unknown signal/ });
});

test.serial('options that are not an object are refused', t => {
  t.throws(() => new WorkerPool(null), { instanceOf: TypeError });
  t.throws(() => new WorkerPool('rr'), { instanceOf: TypeError });
});

test.serial("the schedulingPolicy defaults to 'rr' and can be 'none'", t => {
  t.is(pool(t).schedulingPolicy, 'rr');
  t.is(pool(t, { schedulingPolicy: 'none' }).schedulingPolicy, 'none');
});

test.serial('forking without exec is a TypeError', t => {
  const p = pool(t);
  t.throws(() => p.forkApp({}), { instanceOf: TypeError, message: /exec/ });
  t.throws(() => p.forkAgent(), { instanceOf: TypeError, message: /exec/ });
});

test.serial('kill with an unknown signal name throws', async t => {
  const p = pool(t);
  const { pid } = p.forkApp({ exec: WORKER });
  await ready(p, pid);
  t.throws(() => p.kill(pid, 'SIGNOPE'), { message: /unknown signal/ });
});

test.serial('send with a `from` the core does not know throws', t => {
  const p = pool(t);
  t.throws(() => p.send({ action: 'x', from: 'nobody', to: 'app' }), { message: /from must be/ });
});

test.serial('forkApp returns {id, pid} and app ids count 1, 2, 3', async t => {
  const p = pool(t);
  const refs = [ p.forkApp({ exec: WORKER }), p.forkApp({ exec: WORKER }), p.forkApp({ exec: WORKER }) ];
  for (const ref of refs) t.deepEqual(Object.keys(ref).sort(), [ 'id', 'pid' ]);
  t.deepEqual(refs.map(r => r.id), [ 1, 2, 3 ]);
  const infos = await Promise.all(refs.map(r => ready(p, r.pid)));
  t.deepEqual(infos.map(i => i.workerId), [ 1, 2, 3 ]);
});

test.serial('args and env reach the child', async t => {
  const p = pool(t);
  const { pid } = p.forkAgent({ exec: WORKER, args: [ 'one', 2 ], env: { ...process.env, POOL_TEST_ENV: 'yes' } });
  const info = await ready(p, pid);
  t.deepEqual(info.argv, [ 'one', '2' ]);
  t.is(info.testEnv, 'yes');
});

test.serial('pool.get(pid) is the worker the events carry, with its kind and state', async t => {
  const p = pool(t);
  const { pid, id } = p.forkApp({ exec: WORKER });
  const [ worker ] = await once(p, 'online', w => w.pid === pid);
  t.is(p.get(pid), worker);
  t.like(worker, { id, pid, kind: 'app', state: 'online', exitedAfterDisconnect: false });
});

test.serial('an exit event gives the worker, the code and the signal', async t => {
  const p = pool(t);
  const { pid } = p.forkApp({ exec: WORKER });
  await ready(p, pid);
  p.sendToWorker(pid, { action: 'ctl', data: { op: 'exit', code: 4 } });
  const [ worker, code, signal ] = await once(p, 'exit', w => w.pid === pid);
  t.is(code, 4);
  t.is(signal, null);
  t.like(worker, { state: 'dead', exitCode: 4, signalCode: null });
});

test.serial('an exit event of a killed worker gives the signal and a null code', async t => {
  const p = pool(t);
  const { pid } = p.forkAgent({ exec: WORKER });
  await ready(p, pid);
  p.kill(pid, 'SIGKILL');
  const [ , code, signal ] = await once(p, 'exit', w => w.pid === pid);
  t.is(code, null);
  t.is(signal, 'SIGKILL');
});

test.serial('sendToWorker to a pid that is not a worker returns false', t => {
  t.false(pool(t).sendToWorker(999999999, { action: 'x' }));
});

test.serial('the listening event gives the address, and a connection reaches the worker', async t => {
  const p = pool(t);
  const { pid } = p.forkApp({ exec: WORKER });
  await ready(p, pid);
  p.sendToWorker(pid, { action: 'ctl', data: { op: 'listen', port: 17211 } });
  const [ worker, address ] = await once(p, 'listening', w => w.pid === pid);
  t.is(worker.state, 'listening');
  t.deepEqual(address, { addressType: 4, address: '127.0.0.1', port: 17211 });
  const reply = await new Promise((resolve, reject) => {
    const socket = net.connect(17211, '127.0.0.1');
    let text = '';
    socket.on('data', d => { text += d; });
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
  });
  t.is(reply.trim(), String(pid));
});

test.serial('close() is idempotent and leaves workers() empty', async t => {
  const p = pool(t);
  const { pid } = p.forkApp({ exec: WORKER });
  await ready(p, pid);
  p.close();
  t.notThrows(() => p.close());
  t.deepEqual(p.workers(), []);
  t.false(p.sendToWorker(pid, { action: 'x' }));
  await t.notThrowsAsync(p.terminate(pid, 10));
  t.throws(() => p.forkApp({ exec: WORKER }), { message: /closed/ });
});

test.serial('two pools in one process count ids from 1 each and route only to their own workers', async t => {
  const a = pool(t);
  const b = pool(t);
  const inA = a.forkApp({ exec: WORKER });
  const inB = b.forkApp({ exec: WORKER });
  t.is(inA.id, 1);
  t.is(inB.id, 1);
  await Promise.all([ ready(a, inA.pid), ready(b, inB.pid) ]);
  const seenByA = [];
  a.on('message', msg => { if (msg.action === 'got') seenByA.push(msg.data.msg.action); });
  const gotB = once(b, 'message', msg => msg.action === 'got' && msg.data.msg.action === 'only-b');
  b.send({ action: 'only-b', to: 'app' });
  await gotB;
  a.send({ action: 'only-a', to: 'app' });
  await once(a, 'message', msg => msg.action === 'got' && msg.data.msg.action === 'only-a');
  t.deepEqual(seenByA, [ 'only-a' ]);
});

test.serial('a message bigger than queueBytes still reaches a worker whose queue is empty', async t => {
  const p = pool(t, { queueBytes: 64 * 1024 });
  const { pid } = p.forkApp({ exec: WORKER });
  await ready(p, pid);
  const got = once(p, 'message', msg => msg.action === 'got' && msg.data.msg.action === 'huge');
  p.send({ action: 'huge', data: 'h'.repeat(1024 * 1024), to: 'app' });
  const [ msg ] = await got;
  t.is(msg.data.length, 1024 * 1024);
});
