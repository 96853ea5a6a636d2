'use strict';

// Issue #4, sticky sessions: the master accepts on the app port and hands each connection,
// unread, to the live worker chosen by the client's IP. Clients come from different loopback
// addresses (127.0.0.1, 127.0.0.2, …: Linux accepts any 127.x as a local source), each request
// on a new connection. A SIGKILLed worker's clients move to a live worker; nothing is sent to
// the dead one.

const assert = require('assert');
const path = require('path');
const { once } = require('events');
const { fork } = require('child_process');
const { WorkerPool } = require('../lib/pool');
const { get, load } = require('./fixtures/listen/client');
const { waitFor, alive, getFilepath } = require('./utils');

const WORKER = path.join(__dirname, 'fixtures/listen/worker.js');
const IPS = Array.from({ length: 12 }, (_, i) => `127.0.0.${i + 1}`);

/**
 * Asks from every IP `rounds` times; returns ip → Set of pids that answered.
 * @param {Number} port - the sticky port
 * @param {Number} rounds - requests per IP
 * @return {Promise<Map<String, Set<Number>>>} -
 */
async function homes(port, rounds = 3) {
  const map = new Map(IPS.map(ip => [ ip, new Set() ]));
  await Promise.all(IPS.map(async ip => {
    for (let i = 0; i < rounds; i++) {
      const res = await get({ port, localAddress: ip });
      assert.strictEqual(res.status, 200);
      map.get(ip).add(res.pid);
    }
  }));
  return map;
}

/**
 * Every IP reached exactly one worker; returns ip → pid.
 * @param {Map<String, Set<Number>>} map - from homes()
 * @return {Map<String, Number>} -
 */
function stable(map) {
  const result = new Map();
  for (const [ ip, pids ] of map) {
    assert.strictEqual(pids.size, 1, `${ip} reached ${[ ...pids ]}`);
    result.set(ip, [ ...pids ][0]);
  }
  return result;
}

const show = map => [ ...map ].map(([ ip, pid ]) => `${ip.slice(8)}→${pid}`).join(' ');

describe('test/sticky.test.js', function() {
  this.timeout(60000);

  describe('WorkerPool#listenSticky with plain workers', () => {
    const port = 17440;
    const stickyWorkerPort = 17441;
    let pool;
    let pids;
    const exits = new Map();
    let homesFirst; // ip → pid once every worker listens
    let homesBefore; // ip → pid right before the kill
    let homesAfter; // ip → pid after it
    let victim;
    let movedIps; // the victim's clients
    let killedAt = 0;
    let run; // what the load saw while the victim died
    const late = []; // requests started after the victim's exit was reported, answered by it

    // One scenario, asserted by the tests below: the homes of every client IP, then a worker
    // SIGKILLed under steady load from every IP, then the homes again.
    before(async () => {
      pool = new WorkerPool();
      const ready = new Set();
      pool.on('message', (msg, from) => {
        if (msg && msg.action === 'listen-ok') ready.add(from.pid);
      });
      pool.on('exit', (worker, code, signal) => exits.set(worker.pid, signal));
      pids = [ 1, 2, 3 ].map(() => pool.forkApp({
        exec: WORKER,
        execArgv: [],
        env: Object.assign({}, process.env, { STICKY_PORT: String(stickyWorkerPort) }),
      }).pid);
      await waitFor(() => pids.every(pid => ready.has(pid)), 15000);
      assert.strictEqual(pool.listenSticky(port), port);

      homesFirst = stable(await homes(port));
      console.log('      %s', show(homesFirst));
      homesBefore = stable(await homes(port, 1));
      victim = homesBefore.get('127.0.0.1');
      movedIps = IPS.filter(ip => homesBefore.get(ip) === victim);
      // Requests that started after the pool reported the victim's exit must never reach it.
      // (A request started before may still be answered by the victim after that report: it
      // wrote the response before it died, and the client reads it later.)
      const startedAfterExit = new Set();
      run = await load({
        total: 1200,
        concurrency: 24,
        localAddress: index => IPS[index % IPS.length],
        request: { port },
        onStart: index => {
          if (exits.has(victim)) startedAfterExit.add(index);
        },
        onResponse: (res, index) => {
          if (index === 300 && !killedAt) {
            killedAt = Date.now();
            pool.kill(victim, 'SIGKILL');
          }
          if (res.pid === victim && startedAfterExit.has(index)) late.push(index);
        },
      });
      await waitFor(() => exits.has(victim), 5000);
      console.log('      victim %d (clients %j): %d ok, %d failed %j, per worker %j', victim, movedIps, run.ok,
        run.failures.length, run.failures.map(f => `${f.code}@+${f.at - killedAt}ms`), [ ...run.counts ]);
      homesAfter = stable(await homes(port));
      console.log('      after: %s', show(homesAfter));
    });

    after(async () => {
      pool.close();
      await waitFor(() => pids.every(pid => !alive(pid)), 5000);
    });

    it('the same client IP always reaches the same worker, and every worker has clients', () => {
      assert.deepStrictEqual([ ...new Set(homesFirst.values()) ].sort(), pids.slice().sort());
    });

    it('a worker SIGKILLed under load: only its own in-flight clients fail, none is sent to the dead one', () => {
      assert(killedAt);
      assert.deepStrictEqual(late, []);
      // only connections already handed to the victim when it died may fail: its clients' only
      for (const f of run.failures) assert(movedIps.includes(IPS[f.index % IPS.length]), `a request from ${IPS[f.index % IPS.length]} failed`);
      assert(run.failures.length <= 24, `${run.failures.length} failures`);
    });

    it('after a worker dies every client is served, each by one live worker', () => {
      for (const ip of IPS) assert.notStrictEqual(homesAfter.get(ip), victim);
      for (const ip of movedIps) assert(pids.includes(homesAfter.get(ip)) && alive(homesAfter.get(ip)));
      assert.deepStrictEqual([ ...new Set(homesAfter.values()) ].sort(), pids.filter(pid => pid !== victim).sort());
    });

    // a worker keeps its slot while it lives (StickySlots in src/listen/sticky.rs): only the dead
    // worker's clients are re-homed
    it('clients of the surviving workers keep their worker when another one dies', () => {
      const moved = IPS.filter(ip => homesBefore.get(ip) !== victim && homesAfter.get(ip) !== homesBefore.get(ip));
      assert.deepStrictEqual(moved.map(ip => `${ip}: ${homesBefore.get(ip)} → ${homesAfter.get(ip)}`), []);
    });
  });

  describe('startCluster({sticky: true}) with an egg app', () => {
    const port = 17442;
    let child;
    let stdout = '';
    let stderr = '';

    before(async () => {
      child = fork(getFilepath('start-cluster.js'), [ JSON.stringify({
        baseDir: getFilepath('apps/listen-app'), workers: 3, port, sticky: true, env: 'local',
      }) ], { execArgv: [], stdio: [ 'ignore', 'pipe', 'pipe', 'ipc' ] });
      child.stdout.on('data', d => { stdout += d; });
      child.stderr.on('data', d => { stderr += d; });
      await waitFor(() => /egg started on http:\/\/127\.0\.0\.1:\d+ \(\d+ms\) with STICKY MODE!/.test(stdout) || child.exitCode !== null, 45000);
      assert.strictEqual(child.exitCode, null, stderr);
    });

    after(async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    });

    let workerPids;
    it('the same client IP always reaches the same app worker', async () => {
      const map = stable(await homes(port));
      console.log('      %s', show(map));
      workerPids = [ ...new Set(map.values()) ].sort();
      assert.strictEqual(workerPids.length, 3);
    });

    it('after a worker is SIGKILLed (local env: no refork), its clients are served by live workers', async () => {
      const before = stable(await homes(port, 1));
      const victim = before.get('127.0.0.2');
      process.kill(victim, 'SIGKILL');
      await waitFor(() => new RegExp(`app_worker#\\d+:${victim} died`).test(stderr), 10000);
      const after = stable(await homes(port));
      console.log('      killed %d; after: %s', victim, show(after));
      for (const ip of IPS) assert.notStrictEqual(after.get(ip), victim);
      assert.deepStrictEqual([ ...new Set(after.values()) ].sort(), workerPids.filter(pid => pid !== victim));
      assert.strictEqual(child.exitCode, null);
    });
  });

  describe('startCluster({sticky: true}) in production: a SIGKILLed worker is reforked', () => {
    const port = 17443;
    let child;
    let stdout = '';
    let stderr = '';

    before(async () => {
      child = fork(getFilepath('start-cluster.js'), [ JSON.stringify({
        baseDir: getFilepath('apps/listen-app'), workers: 2, port, sticky: true, env: 'prod',
      }) ], { execArgv: [], stdio: [ 'ignore', 'pipe', 'pipe', 'ipc' ] });
      child.stdout.on('data', d => { stdout += d; });
      child.stderr.on('data', d => { stderr += d; });
      await waitFor(() => /with STICKY MODE!/.test(stdout) || child.exitCode !== null, 45000);
      assert.strictEqual(child.exitCode, null, stderr);
    });

    after(async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    });

    it('requests keep succeeding while it dies and comes back; then every IP is sticky again, the new worker included', async () => {
      const before = stable(await homes(port, 1));
      const victim = before.get('127.0.0.1');
      let failures = 0;
      let ok = 0;
      let stop = false;
      // clients of both workers ask all the time
      const loop = (async () => {
        for (let i = 0; !stop; i++) {
          try {
            await get({ port, localAddress: IPS[i % IPS.length] });
            ok++;
          } catch (_) {
            failures++;
          }
        }
      })();
      process.kill(victim, 'SIGKILL');
      await waitFor(() => /app_worker#3:\d+ started at/.test(stdout), 30000);
      stop = true;
      await loop;
      const after = stable(await homes(port));
      console.log('      killed %d: %d ok, %d failed meanwhile; after the refork: %s', victim, ok, failures, show(after));
      const pids = [ ...new Set(after.values()) ];
      assert.strictEqual(pids.length, 2);
      assert(!pids.includes(victim));
      const reforked = Number(/app_worker#3:(\d+) started at/.exec(stdout)[1]);
      assert(pids.includes(reforked), `the reforked worker ${reforked} has no clients`);
      assert(failures <= 2, `${failures} requests failed`);
    });
  });
});
