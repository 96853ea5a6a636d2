// The binding contract: NativeCluster used straight from JavaScript, the way
// lib/pool.js uses it. Children are real `node` processes running
// test/fixtures/pool/worker.js.
// Tests run serially: most fork node children, and a loaded 2-core machine
// starting dozens of them at once turns waits into timeouts.

import test from 'ava';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { NativeCluster } = require('../binding.js');

const WORKER = fileURLToPath(new URL('../test/fixtures/pool/worker.js', import.meta.url));

function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

/** A NativeCluster whose events are recorded; closed after the test. */
function start(t, options = {}) {
  const events = [];
  const waiters = [];
  const cluster = new NativeCluster(options, batch => {
    for (const event of batch) {
      events.push(event);
      for (const w of waiters.slice()) {
        if (w.match(event)) {
          waiters.splice(waiters.indexOf(w), 1);
          clearTimeout(w.timer);
          w.resolve(event);
        }
      }
    }
  });
  t.teardown(() => cluster.close());
  const wait = (match, what = 'an event', timeout = 20000) => {
    const found = events.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = { match, resolve };
      w.timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeout);
      waiters.push(w);
    });
  };
  const spawn = (kind, extra = {}) => cluster.spawn({
    kind,
    exec: process.execPath,
    args: [ WORKER ],
    env: Object.entries(process.env),
    ...extra,
  });
  // the worker's `ready` report (a message to the master)
  const ready = pid => wait(e => e.kind === 'message' && e.pid === pid && JSON.parse(e.data).action === 'ready',
    `ready from ${pid}`).then(e => JSON.parse(e.data).data);
  const ctl = (pid, op, args = {}) => cluster.sendRaw(pid, JSON.stringify({ action: 'ctl', data: { op, ...args } }));
  const exit = pid => wait(e => e.kind === 'exit' && e.pid === pid, `exit of ${pid}`);
  return { cluster, events, wait, spawn, ready, ctl, exit };
}

const noop = () => {};

// ---- option validation ----

test.serial('an unknown schedulingPolicy is refused', t => {
  t.throws(() => new NativeCluster({ schedulingPolicy: 'random' }, noop), { message: /schedulingPolicy.*random/ });
  // 'shared' is what the core calls 'none' inside, not an option value
  t.throws(() => new NativeCluster({ schedulingPolicy: 'shared' }, noop), { code: 'ERR_INVALID_ARG_VALUE' });
});

test.serial("the schedulingPolicies 'rr', 'none' and 'reuseport' are accepted", t => {
  for (const schedulingPolicy of [ 'rr', 'none', 'reuseport' ]) {
    const cluster = new NativeCluster({ schedulingPolicy }, noop);
    cluster.close();
  }
  t.pass();
});

test.serial('an unknown deathSignal name is refused', t => {
  t.throws(() => new NativeCluster({ deathSignal: 'SIGNOPE' }, noop), { message: /unknown signal.*SIGNOPE/ });
});

test.serial("deathSignal '' (none) and a signal name are accepted", t => {
  new NativeCluster({ deathSignal: '' }, noop).close();
  new NativeCluster({ deathSignal: 'SIGTERM' }, noop).close();
  t.pass();
});

for (const bad of [ 0, -1, Number.NaN, 0.5, Infinity ]) {
  test.serial(`maxLineBytes ${bad} is refused with code ERR_INVALID_ARG_VALUE`, t => {
    t.throws(() => new NativeCluster({ maxLineBytes: bad }, noop), { code: 'ERR_INVALID_ARG_VALUE', message: /maxLineBytes/ });
  });
}

test.serial('queueBytes 0 is refused', t => {
  t.throws(() => new NativeCluster({ queueBytes: 0 }, noop), { message: /queueBytes/ });
});

test.serial('a negative stallTimeoutMs is refused', t => {
  t.throws(() => new NativeCluster({ stallTimeoutMs: -1 }, noop), { message: /stallTimeoutMs/ });
});

test.serial('a negative orphanGraceMs is refused', t => {
  t.throws(() => new NativeCluster({ orphanGraceMs: -1 }, noop), { message: /orphanGraceMs/ });
});

test.serial('no options at all is a working core', t => {
  new NativeCluster(undefined, noop).close();
  new NativeCluster(null, noop).close();
  t.pass();
});

test.serial("a spawn kind other than 'agent' or 'app' is refused", t => {
  const { spawn } = start(t);
  t.throws(() => spawn('worker'), { message: /kind must be 'agent' or 'app'.*worker/ });
});

test.serial('a signal name the core does not know is refused by kill', async t => {
  const { spawn, ready, cluster } = start(t);
  const { pid } = spawn('app');
  await ready(pid);
  t.throws(() => cluster.kill(pid, 'SIGWHATEVER'), { message: /unknown signal.*SIGWHATEVER/ });
  t.true(alive(pid));
});

test.serial('a route `from` other than master, parent, agent or app is refused', t => {
  const { cluster } = start(t);
  t.throws(() => cluster.route('nobody', '{"action":"x"}'), { message: /from must be.*nobody/ });
});

test.serial('spawning a program that does not exist throws', t => {
  const { spawn } = start(t);
  t.throws(() => spawn('app', { exec: '/nonexistent/node' }));
});

// ---- spawn and ids ----

test.serial('spawn returns the id and the pid of a running node child', async t => {
  const { spawn, ready } = start(t);
  const ref = spawn('app');
  t.deepEqual(Object.keys(ref).sort(), [ 'id', 'pid' ]);
  t.true(Number.isInteger(ref.pid) && ref.pid > 0);
  t.is(ref.id, 1);
  const info = await ready(ref.pid);
  t.is(info.pid, ref.pid);
  t.true(readFileSync(`/proc/${ref.pid}/cmdline`, 'utf8').includes('worker.js'));
});

test.serial('app worker ids count 1, 2, 3 and are the cluster.worker.id seen inside', async t => {
  const { spawn, ready } = start(t);
  const refs = [ spawn('app'), spawn('app'), spawn('app') ];
  t.deepEqual(refs.map(r => r.id), [ 1, 2, 3 ]);
  const infos = await Promise.all(refs.map(r => ready(r.pid)));
  t.deepEqual(infos.map(i => i.workerId), [ 1, 2, 3 ]);
  t.true(infos.every(i => i.isWorker));
});

test.serial('the agent is not a cluster worker and does not take an app id', async t => {
  const { spawn, ready } = start(t);
  const agent = spawn('agent');
  const app = spawn('app');
  t.is(app.id, 1);
  t.is((await ready(agent.pid)).isWorker, false);
});

test.serial('a fork event comes first for every spawned worker', async t => {
  const { spawn, wait } = start(t);
  const ref = spawn('agent');
  const fork = await wait(e => e.kind === 'fork' && e.pid === ref.pid);
  t.like(fork, { kind: 'fork', id: ref.id, pid: ref.pid, worker: 'agent' });
});

test.serial('an app worker is reported online', async t => {
  const { spawn, wait } = start(t);
  const ref = spawn('app');
  const online = await wait(e => e.kind === 'online' && e.pid === ref.pid, 'online');
  t.like(online, { id: ref.id, worker: 'app' });
});

// ---- exits ----

test.serial('an exit event carries the exit code', async t => {
  const { spawn, ready, ctl, exit } = start(t);
  const { pid, id } = spawn('app');
  await ready(pid);
  ctl(pid, 'exit', { code: 7 });
  const e = await exit(pid);
  t.like(e, { kind: 'exit', id, pid, worker: 'app', code: 7, exitedAfterDisconnect: false });
  t.falsy(e.signal);
});

test.serial('an exit event carries the signal name of a killed worker', async t => {
  const { spawn, ready, cluster, exit } = start(t);
  const { pid } = spawn('agent');
  await ready(pid);
  t.true(cluster.kill(pid, 'SIGKILL'));
  const e = await exit(pid);
  t.is(e.signal, 'SIGKILL');
  t.is(e.code ?? null, null);
});

test.serial('kill without a signal sends SIGTERM', async t => {
  const { spawn, ready, cluster, exit } = start(t);
  const { pid } = spawn('app');
  await ready(pid);
  cluster.kill(pid);
  t.is((await exit(pid)).signal, 'SIGTERM');
});

test.serial('disconnect makes an app worker exit 0 with exitedAfterDisconnect', async t => {
  const { spawn, ready, cluster, exit, wait } = start(t);
  const { pid } = spawn('app');
  await ready(pid);
  cluster.disconnect(pid);
  await wait(e => e.kind === 'disconnect' && e.pid === pid, 'disconnect');
  const e = await exit(pid);
  t.is(e.code, 0);
  t.true(e.exitedAfterDisconnect);
});

test.serial('kill of a worker that has exited returns false, as documented', async t => {
  const { spawn, ready, ctl, cluster, exit } = start(t);
  const { pid } = spawn('app');
  await ready(pid);
  ctl(pid, 'exit', { code: 0 });
  await exit(pid);
  t.is(cluster.kill(pid, 'SIGTERM'), false);
});

test.serial('sendRaw to a worker that has exited returns false, as documented', async t => {
  const { spawn, ready, ctl, cluster, exit } = start(t);
  const { pid } = spawn('app');
  await ready(pid);
  ctl(pid, 'exit', { code: 0 });
  await exit(pid);
  t.is(cluster.sendRaw(pid, '{"action":"late"}'), false);
});

test.serial('terminate resolves once the worker has exited', async t => {
  const { spawn, ready, cluster, exit } = start(t);
  const { pid } = spawn('app');
  await ready(pid);
  await cluster.terminate(pid, 2000);
  t.false(alive(pid));
  t.is((await exit(pid)).signal, 'SIGTERM');
});

test.serial('terminate SIGKILLs a worker that ignores SIGTERM after the timeout', async t => {
  const { spawn, ready, cluster, ctl, wait, exit } = start(t);
  const { pid } = spawn('app');
  await ready(pid);
  ctl(pid, 'ignoreSigterm');
  await wait(e => e.kind === 'message' && JSON.parse(e.data).action === 'ignoring-sigterm', 'ignoring-sigterm');
  const started = Date.now();
  await cluster.terminate(pid, 400);
  t.true(Date.now() - started >= 350, `resolved after ${Date.now() - started} ms`);
  t.is((await exit(pid)).signal, 'SIGKILL');
});

test.serial('terminate of a pid the core does not know rejects', async t => {
  const { cluster } = start(t);
  await t.throwsAsync(cluster.terminate(999999999, 10), { message: /999999999/ });
});

test.serial('terminate of a pid the core does not know rejects with err.code ERR_NO_SUCH_WORKER', async t => {
  const { cluster } = start(t);
  const err = await t.throwsAsync(cluster.terminate(999999999, 10));
  t.is(err.code, 'ERR_NO_SUCH_WORKER');
  t.is(err.message, 'no worker with pid 999999999');
});

test.serial('terminate after close() rejects with err.code ERR_CLOSED', async t => {
  const { cluster } = start(t);
  cluster.close();
  const err = await t.throwsAsync(cluster.terminate(1, 10));
  t.is(err.code, 'ERR_CLOSED');
});

test.serial('disconnect of a pid the core does not know throws with err.code ERR_NO_SUCH_WORKER', t => {
  const { cluster } = start(t);
  const err = t.throws(() => cluster.disconnect(999999999));
  t.is(err.code, 'ERR_NO_SUCH_WORKER');
});

// ---- messages ----

test.serial('a message to the master is an event with the routed envelope as JSON text', async t => {
  const { spawn, ready, ctl, wait } = start(t);
  const { pid, id } = spawn('app');
  await ready(pid);
  ctl(pid, 'send', { msg: { action: 'hello', data: { a: [ 1 ] }, to: 'master', from: 'agent' } });
  const e = await wait(ev => ev.kind === 'message' && JSON.parse(ev.data).action === 'hello', 'hello');
  t.like(e, { to: 'master', worker: 'app', pid, id });
  t.deepEqual(JSON.parse(e.data), { action: 'hello', data: { a: [ 1 ] }, to: 'master', from: 'app' });
});

test.serial('route from the master reaches the app workers', async t => {
  const { spawn, ready, cluster, wait } = start(t);
  const a = spawn('app');
  const b = spawn('app');
  await Promise.all([ ready(a.pid), ready(b.pid) ]);
  cluster.route('master', JSON.stringify({ action: 'from-master', data: 1, to: 'app' }));
  for (const pid of [ a.pid, b.pid ]) {
    const e = await wait(ev => ev.kind === 'message' && ev.pid === pid && JSON.parse(ev.data).action === 'got' &&
      JSON.parse(ev.data).data.msg.action === 'from-master', `from-master at ${pid}`);
    t.deepEqual(JSON.parse(e.data).data.msg, { action: 'from-master', data: 1, to: 'app', from: 'master' });
  }
});

test.serial("route returns the router's `to`; what goes to the master or the parent is left to the caller", async t => {
  const { spawn, ready, cluster, wait, events } = start(t);
  const agent = spawn('agent');
  const app = spawn('app');
  await Promise.all([ ready(agent.pid), ready(app.pid) ]);
  const route = msg => cluster.route('master', JSON.stringify(msg));
  t.is(route({ action: 'x', to: 'parent' }), 'parent');
  t.is(route({ action: 'x', receiverPid: String(process.pid) }), 'master');
  t.is(route({ action: 'x', receiverPid: 0, receiverWorkerId: app.pid }), 'app');
  t.is(route({ action: 'x', receiverPid: agent.pid, to: 'app' }), 'agent');
  t.is(route({ action: 'x', to: 'nobody-egg-knows' }), null);
  t.is(route({ action: 'x' }), null);
  t.is(cluster.route('parent', JSON.stringify({ action: 'x' })), 'master');
  // the app worker got the one addressed to it by worker id, the agent the one by pid
  await wait(ev => ev.kind === 'message' && ev.pid === app.pid && JSON.parse(ev.data).data?.msg?.receiverWorkerId === app.pid, 'receiverWorkerId');
  await wait(ev => ev.kind === 'message' && ev.pid === agent.pid && JSON.parse(ev.data).data?.msg?.to === 'agent', 'receiverPid of the agent');
  // nothing for the master or the parent came back as an event
  t.false(events.some(ev => ev.kind === 'message' && ev.pid === 0));
});

test.serial('a unit opened with openUnit reaches its recipients only at commitUnit, in call order', async t => {
  const { spawn, ready, cluster, wait, events } = start(t);
  const app = spawn('app');
  await ready(app.pid);
  const got = () => events.filter(ev => ev.kind === 'message' && ev.pid === app.pid && JSON.parse(ev.data).action === 'got')
    .map(ev => JSON.parse(ev.data).data.msg.action);
  cluster.openUnit();
  cluster.route('master', JSON.stringify({ action: 'unit-1', to: 'app' }));
  t.true(cluster.sendRaw(app.pid, JSON.stringify({ action: 'unit-2' })));
  cluster.route('master', JSON.stringify({ action: 'unit-3', receiverPid: app.pid }));
  // time goes by (another worker starts and reports) while the unit is held
  const other = spawn('agent');
  await ready(other.pid);
  t.deepEqual(got(), []);
  cluster.commitUnit();
  await wait(() => got().includes('unit-3'), 'the unit');
  t.deepEqual(got(), [ 'unit-1', 'unit-2', 'unit-3' ]);
});

test.serial('a message routed to the parent is an event with to: parent', async t => {
  const { spawn, ready, ctl, wait } = start(t);
  const { pid } = spawn('agent');
  await ready(pid);
  ctl(pid, 'send', { msg: { action: 'up', to: 'parent' } });
  const e = await wait(ev => ev.kind === 'message' && ev.to === 'parent', 'a parent message');
  t.deepEqual(JSON.parse(e.data), { action: 'up', to: 'parent', from: 'agent' });
});

test.serial('a malformed line from a worker is an error event naming its pid and id', async t => {
  const { spawn, ready, ctl, wait } = start(t);
  const { pid, id } = spawn('app');
  await ready(pid);
  ctl(pid, 'raw', { text: '{oops\n' });
  const e = await wait(ev => ev.kind === 'error', 'an error');
  t.like(e, { kind: 'error', pid, id, errorCode: 'ERR_BAD_MESSAGE' });
  t.regex(e.message, new RegExp(String(pid)));
});

// ---- workers() and close() ----

test.serial('workers() lists each live worker with id, pid, kind, state, exitedAfterDisconnect, droppedMessages, queuedBytes', async t => {
  const { spawn, ready, cluster } = start(t);
  const agent = spawn('agent');
  const app = spawn('app');
  await Promise.all([ ready(agent.pid), ready(app.pid) ]);
  const list = cluster.workers();
  t.is(list.length, 2);
  for (const w of list) {
    t.deepEqual(Object.keys(w).sort(),
      [ 'badLines', 'droppedMessages', 'exitedAfterDisconnect', 'id', 'kind', 'pid', 'queuedBytes', 'state' ]);
    t.is(w.exitedAfterDisconnect, false);
    t.is(w.badLines, 0);
    t.is(w.droppedMessages, 0);
    t.is(typeof w.queuedBytes, 'number');
    t.is(w.state, 'online');
  }
  t.like(list.find(w => w.pid === agent.pid), { id: agent.id, kind: 'agent' });
  t.like(list.find(w => w.pid === app.pid), { id: app.id, kind: 'app' });
});

test.serial('workers() is a snapshot: an exited worker is gone from the next one', async t => {
  const { spawn, ready, ctl, cluster, exit } = start(t);
  const a = spawn('app');
  const b = spawn('app');
  await Promise.all([ ready(a.pid), ready(b.pid) ]);
  const before = cluster.workers();
  ctl(a.pid, 'exit', { code: 0 });
  await exit(a.pid);
  t.is(before.length, 2);
  t.deepEqual(cluster.workers().map(w => w.pid), [ b.pid ]);
});

test.serial("a listening app worker's state is 'listening'", async t => {
  const { spawn, ready, ctl, wait, cluster } = start(t);
  const { pid } = spawn('app');
  await ready(pid);
  ctl(pid, 'listen', { port: 17210 });
  const e = await wait(ev => ev.kind === 'listening' && ev.pid === pid, 'listening');
  t.like(JSON.parse(e.data), { port: 17210, address: '127.0.0.1', addressType: 4 });
  t.is(cluster.workers().find(w => w.pid === pid).state, 'listening');
});

test.serial('close() kills every child and can be called again', async t => {
  const { spawn, ready, cluster } = start(t);
  const refs = [ spawn('agent'), spawn('app'), spawn('app') ];
  await Promise.all(refs.map(r => ready(r.pid)));
  cluster.close();
  t.notThrows(() => cluster.close());
  const end = Date.now() + 2000;
  while (refs.some(r => alive(r.pid)) && Date.now() < end) await sleep(20);
  t.deepEqual(refs.filter(r => alive(r.pid)).map(r => r.pid), []);
});

test.serial('after close() spawn, route and workers() throw that the core is closed', t => {
  const { cluster, spawn } = start(t);
  cluster.close();
  t.throws(() => spawn('app'), { message: /closed/ });
  t.throws(() => cluster.route('master', '{"action":"x","to":"app"}'), { message: /closed/ });
  t.throws(() => cluster.workers(), { message: /closed/ });
});

test.serial('an error from the core carries its stable code in err.code (ERR_CLOSED), as STYLE.md asks', t => {
  const { cluster, spawn } = start(t);
  cluster.close();
  const err = t.throws(() => spawn('app'));
  t.is(err.code, 'ERR_CLOSED');
});
