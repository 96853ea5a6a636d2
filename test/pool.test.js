'use strict';

const assert = require('assert');
const { spawn } = require('child_process');
const net = require('net');
const { PoolHarness, alive, sleep, waitUntil } = require('./fixtures/pool/harness');

describe('test/pool.test.js', () => {
  let h;

  afterEach(() => {
    if (h) h.close();
    h = null;
  });

  describe('disconnect', () => {
    it('pool.disconnect(pid) makes an app worker exit with code 0 and exitedAfterDisconnect true', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      h.pool.disconnect(app.pid);
      const exit = await h.exit(app.pid);
      assert.strictEqual(exit.code, 0);
      assert.strictEqual(exit.signal, null);
      assert.strictEqual(exit.worker.exitedAfterDisconnect, true);
    });

    it("pool.disconnect(pid) emits 'disconnect' for the worker before its 'exit'", async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      h.pool.disconnect(app.pid);
      await h.exit(app.pid);
      const kinds = h.events.filter(e => (e.type === 'disconnect' || e.type === 'exit') && e.value.pid === app.pid)
        .map(e => e.type);
      assert.deepStrictEqual(kinds, [ 'disconnect', 'exit' ]);
    });

    it('cluster.worker.disconnect() inside an app worker makes it exit with code 0 and exitedAfterDisconnect true', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      h.ctl(app.pid, 'disconnect');
      const exit = await h.exit(app.pid);
      assert.strictEqual(exit.code, 0);
      assert.strictEqual(exit.signal, null);
      assert.strictEqual(exit.worker.exitedAfterDisconnect, true);
    });

    it("pool.disconnect(pid) of the agent closes its channel: the agent sees 'disconnect' and exits", async () => {
      h = new PoolHarness();
      const agent = await h.fork('agent');
      h.pool.disconnect(agent.pid);
      const exit = await h.exit(agent.pid);
      assert.strictEqual(exit.code, 0);
      assert.strictEqual(exit.worker.exitedAfterDisconnect, true);
    });

    it('an app worker that exits on its own has exitedAfterDisconnect false', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      h.ctl(app.pid, 'exit', { code: 0 });
      const exit = await h.exit(app.pid);
      assert.strictEqual(exit.code, 0);
      assert.strictEqual(exit.worker.exitedAfterDisconnect, false);
    });

    it('the other workers keep exchanging messages after one is disconnected', async () => {
      h = new PoolHarness();
      const agent = await h.fork('agent');
      const a = await h.fork('app');
      const b = await h.fork('app');
      h.pool.disconnect(a.pid);
      await h.exit(a.pid);
      h.ctl(agent.pid, 'send', { msg: { action: 'after-disconnect' } });
      await h.got(b.pid, m => m.action === 'after-disconnect');
      await sleep(300);
      assert.deepStrictEqual(h.received(m => m.action === 'after-disconnect').map(g => g.pid), [ b.pid ]);
    });
  });

  describe('exit code and signal', () => {
    it('an app worker calling process.exit(3) is reported with code 3 and no signal', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      h.ctl(app.pid, 'exit', { code: 3 });
      const exit = await h.exit(app.pid);
      assert.deepStrictEqual([ exit.code, exit.signal ], [ 3, null ]);
    });

    it('a worker killed with SIGKILL is reported with signal SIGKILL and code null', async () => {
      h = new PoolHarness();
      const agent = await h.fork('agent');
      assert.strictEqual(h.pool.kill(agent.pid, 'SIGKILL'), true);
      const exit = await h.exit(agent.pid);
      assert.deepStrictEqual([ exit.code, exit.signal ], [ null, 'SIGKILL' ]);
    });

    it('pool.kill(pid) sends SIGTERM by default', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      h.pool.kill(app.pid);
      const exit = await h.exit(app.pid);
      assert.deepStrictEqual([ exit.code, exit.signal ], [ null, 'SIGTERM' ]);
    });

    it('a stopped worker with 50 MiB queued for it is reported at once when SIGKILLed, and routing goes on', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      const other = await h.fork('app');
      h.pool.kill(app.pid, 'SIGSTOP');
      for (let i = 0; i < 5; i++) h.pool.sendToWorker(app.pid, { action: 'stuffing', data: 'z'.repeat(10 << 20) });
      await waitUntil(() => h.pool.workers().find(w => w.pid === app.pid).queuedBytes > 0, 2000, 'queued bytes');
      h.pool.kill(app.pid, 'SIGKILL');
      const exit = await h.exit(app.pid, 3000);
      assert.deepStrictEqual([ exit.code, exit.signal ], [ null, 'SIGKILL' ]);
      h.pool.send({ action: 'after-stuffed', to: 'app' });
      await h.got(other.pid, m => m.action === 'after-stuffed');
    });

    it('an exited worker leaves pool.workers() and pool.get()', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      assert(h.pool.get(app.pid));
      h.ctl(app.pid, 'exit', { code: 0 });
      await h.exit(app.pid);
      assert.strictEqual(h.pool.get(app.pid), undefined);
      assert.deepStrictEqual(h.pool.workers().filter(w => w.pid === app.pid), []);
    });

    it('every exit is reported with its code and signal while this process runs 60 child_process children at once', async () => {
      h = new PoolHarness();
      const workers = [];
      for (let i = 0; i < 8; i++) workers.push(await h.fork(i % 4 === 0 ? 'agent' : 'app'));
      // what each worker will do, and what its exit must say
      const plans = workers.map((w, i) => {
        switch (i % 4) {
          case 0: return { pid: w.pid, kill: 'SIGKILL', want: [ null, 'SIGKILL' ] };
          case 1: return { pid: w.pid, exit: 10 + i, want: [ 10 + i, null ] };
          case 2: return { pid: w.pid, kill: 'SIGTERM', want: [ null, 'SIGTERM' ] };
          default: return { pid: w.pid, kill: 'SIGHUP', want: [ null, 'SIGHUP' ] };
        }
      });
      // 60 children of this process, exiting at the same time as the workers
      const others = [];
      for (let i = 0; i < 60; i++) {
        others.push(new Promise((resolve, reject) => {
          const child = spawn('/bin/sh', [ '-c', `sleep 0.${i % 5}; exit ${i % 7}` ], { stdio: 'ignore' });
          child.on('error', reject);
          child.on('exit', (code, signal) => resolve({ i, code, signal }));
        }));
      }
      for (const plan of plans) {
        if (plan.kill) h.pool.kill(plan.pid, plan.kill);
        else h.ctl(plan.pid, 'exit', { code: plan.exit });
        await sleep(30);
      }
      for (const plan of plans) {
        const exit = await h.exit(plan.pid, 15000);
        assert.deepStrictEqual([ exit.code, exit.signal ], plan.want, `exit of worker ${plan.pid}`);
      }
      for (const o of await Promise.all(others)) {
        assert.deepStrictEqual([ o.code, o.signal ], [ o.i % 7, null ], `exit of child_process #${o.i}`);
      }
      assert.strictEqual(h.all('exit').length, 8);
    });
  });

  describe('exit reports in a host that also uses child_process', () => {
    for (const order of [ 'libuv-first', 'core-first' ]) {
      it(`every exit is reported right when ${order === 'libuv-first' ? "libuv's SIGCHLD handler came first" : 'the core came first'}`, async () => {
        const child = spawn(process.execPath, [ require.resolve('./fixtures/pool/exits_under_load.js'), order ],
          { stdio: [ 'ignore', 'pipe', 'inherit' ] });
        let out = '';
        child.stdout.on('data', d => { out += d; });
        const code = await new Promise(resolve => child.on('exit', resolve));
        assert.strictEqual(code, 0);
        const { workers, others } = JSON.parse(out);
        assert.strictEqual(workers.length, 8);
        for (const w of workers) assert.deepStrictEqual(w.got, w.want);
        assert.strictEqual(others.length, 60);
        for (const o of others) assert.deepStrictEqual(o.got, o.want);
      });
    }
  });

  describe('ordering and volume', () => {
    it('messages a worker wrote just before exiting are emitted before its exit', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      h.ctl(app.pid, 'burstThenExit', { action: 'last-words', count: 500, to: 'master', code: 9 });
      await h.exit(app.pid);
      const exitAt = h.events.findIndex(e => e.type === 'exit' && e.value.pid === app.pid);
      const before = h.events.slice(0, exitAt).filter(e => e.type === 'message' && e.value.msg.action === 'last-words');
      assert.deepStrictEqual(before.map(e => e.value.msg.data), [ ...Array(500).keys() ]);
    });

    it('20000 messages from a worker to the master are emitted in order', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      h.ctl(app.pid, 'burst', { action: 'many-to-master', count: 20000, to: 'master' });
      await waitUntil(() => h.all('message', e => e.msg.action === 'many-to-master').length === 20000, 30000,
        '20000 messages');
      const data = h.all('message', e => e.msg.action === 'many-to-master').map(e => e.msg.data);
      assert(data.every((d, i) => d === i), 'in order');
    });

    it('20000 messages from the agent reach each of two app workers in order', async () => {
      h = new PoolHarness();
      const agent = await h.fork('agent');
      const apps = [ await h.fork('app'), await h.fork('app') ];
      h.ctl(agent.pid, 'burst', { action: 'many-to-apps', count: 20000 });
      for (const app of apps) {
        await waitUntil(() => h.received(m => m.action === 'many-to-apps').filter(g => g.pid === app.pid).length === 20000,
          40000, `20000 messages at ${app.pid}`);
        const data = h.received(m => m.action === 'many-to-apps').filter(g => g.pid === app.pid).map(g => g.msg.data);
        assert(data.every((d, i) => d === i), `in order at ${app.pid}`);
      }
    });

    it('a worker whose script does not exist is reported exiting with code 1', async () => {
      h = new PoolHarness();
      const ref = await h.fork('app', { exec: '/nonexistent/worker.js', wait: false });
      const exit = await h.exit(ref.pid);
      assert.deepStrictEqual([ exit.code, exit.signal ], [ 1, null ]);
    });
  });

  describe('terminate(pid, timeout)', () => {
    it('an app worker that does not handle SIGTERM exits by SIGTERM long before the timeout', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      const start = Date.now();
      await h.pool.terminate(app.pid, 5000);
      assert(Date.now() - start < 3000, `took ${Date.now() - start}ms`);
      const exit = await h.exit(app.pid);
      assert.strictEqual(exit.signal, 'SIGTERM');
    });

    it('a worker that ignores SIGTERM is SIGKILLed once the timeout has passed', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      h.ctl(app.pid, 'ignoreSigterm');
      await h.report('ignoring-sigterm', app.pid);
      const start = Date.now();
      await h.pool.terminate(app.pid, 800);
      const took = Date.now() - start;
      assert(took >= 700, `resolved after ${took}ms, before the timeout`);
      assert(took < 5000, `resolved after ${took}ms`);
      const exit = await h.exit(app.pid);
      assert.deepStrictEqual([ exit.code, exit.signal ], [ null, 'SIGKILL' ]);
      assert(h.all('message', e => e.msg.action === 'sigterm-ignored' && e.msg.data.pid === app.pid).length >= 1,
        'the worker got SIGTERM first');
    });

    it('terminate resolves only once the worker has exited', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      h.ctl(app.pid, 'ignoreSigterm');
      await h.report('ignoring-sigterm', app.pid);
      await h.pool.terminate(app.pid, 300);
      assert.strictEqual(alive(app.pid), false);
    });

    it('a grandchild that ignores SIGTERM is killed too when its parent worker ignores SIGTERM', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      h.ctl(app.pid, 'ignoreSigterm');
      await h.report('ignoring-sigterm', app.pid);
      h.ctl(app.pid, 'grandchild');
      const { pid: grandchild } = await h.report('grandchild');
      assert(alive(grandchild));
      await h.pool.terminate(app.pid, 500);
      await waitUntil(() => !alive(grandchild), 2000, `grandchild ${grandchild} to die`);
    });

    it('a grandchild that ignores SIGTERM is killed after the timeout even when its parent died of SIGTERM at once', async () => {
      h = new PoolHarness();
      const agent = await h.fork('agent');
      h.ctl(agent.pid, 'grandchild');
      const { pid: grandchild } = await h.report('grandchild');
      await h.pool.terminate(agent.pid, 500);
      const exit = await h.exit(agent.pid);
      assert.strictEqual(exit.signal, 'SIGTERM');
      await waitUntil(() => !alive(grandchild), 2000, `grandchild ${grandchild} to die`);
    });

    it('a grandchild started during the timeout, by the SIGTERM handler, is killed too', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      h.ctl(app.pid, 'grandchildOnSigterm');
      await h.report('ignoring-sigterm', app.pid);
      const done = h.pool.terminate(app.pid, 1500);
      const { pid: grandchild } = await h.report('grandchild', undefined, 5000);
      await done;
      await waitUntil(() => !alive(grandchild), 2000, `grandchild ${grandchild} to die`).catch(err => {
        try { process.kill(grandchild, 'SIGKILL'); } catch (_) { /* gone */ }
        throw err;
      });
    });

    it('terminate of a pid that is not a worker resolves without killing anything', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      await h.pool.terminate(999999999, 100);
      assert(alive(app.pid));
    });
  });

  describe('app workers listening on one port', () => {
    /** The pid a worker's server answers with, for one connection. */
    const ask = port => new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      let text = '';
      socket.setTimeout(5000, () => socket.destroy(new Error('no answer in 5 s')));
      socket.on('data', d => { text += d; });
      socket.on('end', () => resolve(Number(text.trim())));
      socket.on('error', reject);
    });

    [[ 'rr', 17220 ], [ 'none', 17221 ], [ 'reuseport', 17222 ]].forEach(([ schedulingPolicy, port ]) => {
      it(`with schedulingPolicy ${schedulingPolicy}, connections reach both, then the survivor when one dies`, async () => {
        h = new PoolHarness({ schedulingPolicy });
        const apps = [ await h.fork('app'), await h.fork('app') ];
        for (const app of apps) {
          h.ctl(app.pid, 'listen', { port });
          const { address } = await h.wait('listening', w => w.pid === app.pid, 10000, `listening of ${app.pid}`);
          assert.strictEqual(address.port, port);
        }
        const answers = [];
        for (let i = 0; i < 20; i++) answers.push(await ask(port));
        assert.deepStrictEqual([ ...new Set(answers) ].sort(), apps.map(a => a.pid).sort());
        h.pool.kill(apps[0].pid, 'SIGKILL');
        await h.exit(apps[0].pid);
        for (let i = 0; i < 5; i++) assert.strictEqual(await ask(port), apps[1].pid);
      });
    });
  });

  describe('close()', () => {
    it('kills every worker and its descendants', async () => {
      h = new PoolHarness();
      const agent = await h.fork('agent');
      const app = await h.fork('app');
      h.ctl(app.pid, 'grandchild');
      const { pid: grandchild } = await h.report('grandchild');
      h.close();
      await waitUntil(() => !alive(agent.pid) && !alive(app.pid) && !alive(grandchild), 2000, 'every process to die');
    });

    it('forking after close() throws', () => {
      h = new PoolHarness();
      h.close();
      assert.throws(() => h.pool.forkApp({ exec: __filename }), /closed/);
    });

    it('lets this process exit once the last worker is gone', async () => {
      // the pool keeps the event loop alive while it has workers, not after
      const child = spawn(process.execPath, [ require.resolve('./fixtures/pool/exits_when_done.js') ], { stdio: [ 'ignore', 'pipe', 'inherit' ] });
      let out = '';
      child.stdout.on('data', d => { out += d; });
      const [ code, signal ] = await new Promise(resolve => child.on('exit', (c, s) => resolve([ c, s ])));
      assert.strictEqual(signal, null);
      assert.strictEqual(code, 0);
      assert.match(out, /worker exited 0/);
    });
  });
});
