'use strict';

// Issue #4: server.listen() in app workers under each scheduling policy, with real HTTP requests
// against real worker processes: balance under load, a worker SIGKILLed under load, port 0, two
// servers in one worker, a unix socket, hostname binding, EADDRINUSE, and the master's
// `app-start` event (compared with egg-cluster's).

const assert = require('assert');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { once } = require('events');
const { fork, execFileSync } = require('child_process');
const coffee = require('coffee');
const { WorkerPool } = require('../lib/pool');
const { get, load, shares } = require('./fixtures/listen/client');
const { sleep, waitFor, alive, getFilepath } = require('./utils');

const WORKER = path.join(__dirname, 'fixtures/listen/worker.js');
const POLICIES = [ 'rr', 'none', 'reuseport' ];

/** A WorkerPool of plain workers (test/fixtures/listen/worker.js) and what they report. */
class Pool {
  constructor(schedulingPolicy) {
    this.pool = new WorkerPool({ schedulingPolicy });
    this.reports = []; // { action, data, pid }
    this.conns = new Map(); // pid -> connections the worker reported
    this.exits = new Map(); // pid -> { code, signal }
    this.pool.on('message', (msg, from) => {
      if (!msg || typeof msg !== 'object') return;
      const pid = (msg.data && msg.data.pid) || (from && from.pid);
      if (msg.action === 'conn') {
        this.conns.set(pid, (this.conns.get(pid) || 0) + 1);
        return;
      }
      this.reports.push({ action: msg.action, data: msg.data, pid });
    });
    this.pool.on('exit', (worker, code, signal) => this.exits.set(worker.pid, { code, signal }));
    this.pids = [];
  }

  /**
   * Forks `count` workers with this env and waits until each reported every listen.
   * @param {Number} count - workers
   * @param {Object} env - LISTEN, SPIN_MS, … (see the fixture)
   * @param {Number} [listens] - listen reports to wait for, per worker
   * @return {Promise<Number[]>} pids
   */
  async start(count, env, listens = JSON.parse(env.LISTEN || '[{}]').length) {
    const pids = [];
    for (let i = 0; i < count; i++) {
      const { pid } = this.pool.forkApp({ exec: WORKER, execArgv: [], env: Object.assign({}, process.env, env) });
      pids.push(pid);
    }
    this.pids.push(...pids);
    await waitFor(() => pids.every(pid => this.listens(pid).length === listens), 15000);
    return pids;
  }

  listens(pid) {
    return this.reports.filter(r => r.pid === pid && (r.action === 'listen-ok' || r.action === 'listen-error'));
  }

  async close() {
    this.pool.close();
    await waitFor(() => this.pids.every(pid => !alive(pid)), 5000);
  }
}

/** A non-loopback IPv4 address of this machine, if it has one. */
function otherLocalAddress() {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list || []) {
      if (a.family === 'IPv4' && !a.internal) return a.address;
    }
  }
  return null;
}

function connectError(port, host) {
  return new Promise(resolve => {
    const socket = net.connect(port, host);
    socket.setTimeout(3000, () => socket.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    socket.on('connect', () => { socket.destroy(); resolve(null); });
    socket.on('error', err => resolve(err.code));
  });
}

describe('test/listen.test.js', function() {
  this.timeout(60000);
  let p;

  afterEach(async () => {
    if (p) await p.close();
    p = null;
  });

  describe('balance under load: 4 workers, 2000 requests, 48 at a time, a new connection each', () => {
    const ports = { rr: 17400, none: 17401, reuseport: 17402 };
    POLICIES.forEach(policy => {
      it(`${policy}: every worker serves${policy === 'none' ? '' : ', within 2× of each other'}`, async () => {
        p = new Pool(policy);
        const port = ports[policy];
        // a CPU-bound millisecond per request: the load is sustained and a busy worker is busy
        const pids = await p.start(4, { LISTEN: JSON.stringify([{ port }]), SPIN_MS: '1' });
        const result = await load({ request: { port }, total: 2000, concurrency: 48 });
        const s = shares(result.counts, pids);
        console.log('      [%s] %d ok, %d failed in %dms (%d req/s); per worker: %s; max/min %s',
          policy, result.ok, result.failures.length, result.ms, Math.round(result.ok * 1000 / result.ms), s.text, s.ratio.toFixed(2));
        assert.strictEqual(result.failures.length, 0, JSON.stringify(result.failures.slice(0, 5)));
        assert.deepStrictEqual([ ...result.counts.keys() ].sort(), pids.slice().sort());
        for (const n of s.values) assert(n > 0, `a worker served nothing: ${s.text}`);
        if (policy !== 'none') assert(s.ratio <= 2, `unbalanced: ${s.text}`);
      });
    });
  });

  describe('rr: a worker SIGKILLed under load', () => {
    it('fails only requests it already had; connections queued in the master go to live workers', async () => {
      p = new Pool('rr');
      const port = 17403;
      // CPU-bound handlers: the master always has connections waiting for a free worker
      const pids = await p.start(4, { LISTEN: JSON.stringify([{ port }]), SPIN_MS: '3', REPORT_CONNS: '1' });
      const victim = pids[0];
      const servedBy = new Map();
      let stoppedAt = 0;
      let killedAt = 0;
      const afterKill = new Map();
      const result = await load({
        request: { port },
        total: 1800,
        concurrency: 64,
        onResponse: (res, index) => {
          servedBy.set(res.pid, (servedBy.get(res.pid) || 0) + 1);
          if (killedAt) afterKill.set(res.pid, (afterKill.get(res.pid) || 0) + 1);
          // SIGSTOP first: the victim stops reading, so the master's newconn to it stays
          // unanswered (one in flight, the master keeps it) while the others get the rest;
          // then SIGKILL: that connection must go to a live worker, not fail
          if (index >= 500 && !stoppedAt) {
            stoppedAt = Date.now();
            p.pool.kill(victim, 'SIGSTOP');
          }
          if (index >= 800 && stoppedAt && !killedAt) {
            killedAt = Date.now();
            p.pool.kill(victim, 'SIGKILL');
          }
        },
      });
      await waitFor(() => p.exits.has(victim), 5000);
      assert.strictEqual(p.exits.get(victim).signal, 'SIGKILL');
      // connections the victim took (it reports each one as it gets it) and never answered
      const taken = p.conns.get(victim) || 0;
      const unanswered = taken - (servedBy.get(victim) || 0);
      const s = shares(result.counts, pids);
      console.log('      [rr kill] %d ok, %d failed (%j); victim %d (stopped for %dms, then killed) took %d connections, answered %d, so %d were in flight on it; per worker: %s; after the kill: %j',
        result.ok, result.failures.length, [ ...new Set(result.failures.map(f => f.code)) ], victim, killedAt - stoppedAt, taken,
        servedBy.get(victim) || 0, unanswered, s.text, [ ...afterKill ]);
      assert(killedAt, 'the worker was killed under load');
      // The victim acks a connection to the master (Node's `accepted`) just before it reports it
      // here, and the master hands it one connection at a time: a SIGSTOP can fall between the
      // two for that one connection only, so it may have had one more than it reported.
      assert(result.failures.length <= unanswered + 1,
        `${result.failures.length} requests failed but only ${unanswered} (+1 unreported) were in flight on the killed worker`);
      // a connection lost in the master would hang until the client's timeout
      for (const f of result.failures) assert.notStrictEqual(f.code, 'ETIMEDOUT');
      // the survivors kept serving
      for (const pid of pids.slice(1)) assert(afterKill.get(pid) > 0, `worker ${pid} served nothing after the kill`);
      assert.strictEqual(result.ok + result.failures.length, 1800);
      // and the port still works
      for (let i = 0; i < 10; i++) assert.notStrictEqual((await get({ port })).pid, victim);
    });
  });

  POLICIES.forEach(policy => {
    describe(`schedulingPolicy ${policy}`, () => {
      const base = 17404 + POLICIES.indexOf(policy) * 4; // 17404..17415

      it('port 0: every worker gets the same ephemeral port, and each serves on it', async () => {
        p = new Pool(policy);
        const pids = await p.start(3, { LISTEN: JSON.stringify([{ port: 0 }]) });
        const ports = pids.map(pid => p.listens(pid)[0].data.address.port);
        assert.strictEqual(new Set(ports).size, 1, `ports: ${ports}`);
        const port = ports[0];
        assert(port > 0);
        const result = await load({ request: { port }, total: 300, concurrency: 16 });
        console.log('      [%s port 0 → %d] %s', policy, port, shares(result.counts, pids).text);
        assert.strictEqual(result.failures.length, 0, JSON.stringify(result.failures.slice(0, 5)));
        if (policy !== 'none') assert.deepStrictEqual([ ...result.counts.keys() ].sort(), pids.slice().sort());
      });

      it('two servers on two ports in one worker', async () => {
        p = new Pool(policy);
        const listen = [{ port: base }, { port: base + 1 }];
        const pids = await p.start(2, { LISTEN: JSON.stringify(listen) });
        for (const pid of pids) {
          assert.deepStrictEqual(p.listens(pid).map(r => [ r.action, r.data.address.port ]).sort(),
            [[ 'listen-ok', base ], [ 'listen-ok', base + 1 ]]);
        }
        for (const port of [ base, base + 1 ]) {
          const seen = new Set();
          for (let i = 0; i < 20; i++) {
            const res = await get({ port });
            assert.strictEqual(res.body, `${res.pid} ${port}`);
            seen.add(res.pid);
          }
          if (policy === 'rr') assert.strictEqual(seen.size, 2);
        }
      });

      it('a unix socket path', async () => {
        p = new Pool(policy);
        const sock = path.join(os.tmpdir(), `egg-cluster-rs-listen-${process.pid}-${policy}.sock`);
        fs.rmSync(sock, { force: true });
        const listening = [];
        p.pool.on('listening', (worker, address) => listening.push(address));
        try {
          const pids = await p.start(2, { LISTEN: JSON.stringify([{ path: sock }]) });
          for (const pid of pids) assert.deepStrictEqual(p.listens(pid)[0].data, { index: 0, address: sock });
          await waitFor(() => listening.length === 2, 5000);
          for (const address of listening) {
            assert.strictEqual(address.addressType, -1);
            assert.strictEqual(address.address, sock);
          }
          const result = await load({ request: { socketPath: sock }, total: 200, concurrency: 8 });
          console.log('      [%s unix socket] %s', policy, shares(result.counts, pids).text);
          assert.strictEqual(result.failures.length, 0);
          assert.strictEqual(result.ok, 200);
          if (policy === 'rr') assert.strictEqual(result.counts.size, 2);
        } finally {
          fs.rmSync(sock, { force: true });
        }
      });

      // FAILS (src/listen/): Node's primary closes the pipe handle when its last worker is gone
      // and libuv unlinks the path (uv__pipe_close); ours leaves the socket file, so the next
      // listen on that path (a reforked worker, a restarted app) gets EADDRINUSE
      it('a unix socket path is removed with its last worker, and can be listened on again', async () => {
        p = new Pool(policy);
        const sock = path.join(os.tmpdir(), `egg-cluster-rs-relisten-${process.pid}-${policy}.sock`);
        fs.rmSync(sock, { force: true });
        try {
          const [ pid ] = await p.start(1, { LISTEN: JSON.stringify([{ path: sock }]) });
          assert.strictEqual(p.listens(pid)[0].action, 'listen-ok');
          p.pool.kill(pid, 'SIGKILL');
          await waitFor(() => p.exits.has(pid), 5000);
          await sleep(200);
          const [ next ] = await p.start(1, { LISTEN: JSON.stringify([{ path: sock }]) });
          assert.deepStrictEqual(p.listens(next)[0].data, { index: 0, address: sock });
          assert.strictEqual((await get({ socketPath: sock })).pid, next);
          p.pool.kill(next, 'SIGKILL');
          await waitFor(() => p.exits.has(next), 5000);
          await sleep(200);
          assert.strictEqual(fs.existsSync(sock), false, `${sock} is left behind`);
        } finally {
          fs.rmSync(sock, { force: true });
        }
      });

      it('hostname 127.0.0.1: bound there only', async () => {
        p = new Pool(policy);
        const port = base + 2;
        const listening = [];
        p.pool.on('listening', (worker, address) => listening.push(address));
        const pids = await p.start(2, { LISTEN: JSON.stringify([{ port, host: '127.0.0.1' }]) });
        for (const pid of pids) {
          assert.deepStrictEqual(p.listens(pid)[0].data.address, { address: '127.0.0.1', family: 'IPv4', port });
        }
        await waitFor(() => listening.length === 2, 5000);
        for (const address of listening) {
          assert.deepStrictEqual([ address.addressType, address.address, address.port ], [ 4, '127.0.0.1', port ]);
        }
        assert.strictEqual((await get({ port })).status, 200);
        const other = otherLocalAddress();
        if (other) {
          assert.strictEqual(await connectError(port, other), 'ECONNREFUSED', `reachable on ${other}:${port}`);
        } else {
          console.log('      (no other local address to check that %d is not reachable elsewhere)', port);
        }
        // the kernel's view: every listening socket on this port is bound to 127.0.0.1
        const ss = execFileSync('ss', [ '-Hltn', `sport = :${port}` ], { encoding: 'utf8' }).trim().split('\n');
        assert(ss.length >= 1 && ss.every(line => line.includes(`127.0.0.1:${port}`)), ss.join('\n'));
        // reuseport: one socket per worker; rr and none: one socket
        assert.strictEqual(ss.length, policy === 'reuseport' ? 2 : 1, ss.join('\n'));
      });

      it('EADDRINUSE: the worker gets `bind EADDRINUSE null:<port>`', async () => {
        const port = base + 3;
        const blocker = net.createServer().listen(port);
        await once(blocker, 'listening');
        try {
          p = new Pool(policy);
          const [ pid ] = await p.start(1, { LISTEN: JSON.stringify([{ port }]) });
          assert.deepStrictEqual(p.listens(pid)[0].data,
            { index: 0, message: `bind EADDRINUSE null:${port}`, code: 'EADDRINUSE' });
          // the failed listen left nothing behind: the port still belongs to the blocker only
          blocker.close();
          await once(blocker, 'close');
          await p.start(1, { LISTEN: JSON.stringify([{ port }]) });
          assert.strictEqual(p.listens(p.pids[1])[0].action, 'listen-ok');
        } finally {
          blocker.close();
        }
      });
    });
  });


  describe('egg master (an egg 3 app): app-start, schedulingPolicy, EADDRINUSE', () => {
    const APP = getFilepath('apps/listen-app');
    const FRAMEWORK = path.dirname(require.resolve('egg'));
    let child;

    afterEach(async () => {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      child = null;
    });

    /**
     * Starts test/fixtures/listen/master.js; resolves at egg-ready with the app-start events.
     * @param {String} impl - egg-cluster or egg-cluster-rs
     * @param {Object} options - Master options (baseDir and framework are filled in)
     * @param {Object} [env] - more environment
     * @return {Promise<{appStarts, stdout, stderr}>} -
     */
    async function startMaster(impl, options, env = {}) {
      child = fork(getFilepath('listen/master.js'), [ impl, JSON.stringify(Object.assign({ baseDir: APP, framework: FRAMEWORK }, options)) ], {
        execArgv: [],
        stdio: [ 'ignore', 'pipe', 'pipe', 'ipc' ],
        env: Object.assign({}, process.env, env),
      });
      const out = { appStarts: [], stdout: '', stderr: '' };
      child.stdout.on('data', d => { out.stdout += d; });
      child.stderr.on('data', d => { out.stderr += d; });
      await new Promise((resolve, reject) => {
        child.on('message', msg => {
          if (msg && msg.action === 'test:app-start') out.appStarts.push(msg.data);
          if (msg && msg.action === 'egg-ready') resolve();
        });
        child.once('exit', code => reject(new Error(`${impl} master exited ${code}: ${out.stderr}`)));
      });
      return out;
    }

    /**
     * app-start data without the pids, as it crossed the IPC channel.
     * @param {Object} data - { workerId, address }
     * @return {Object} -
     */
    const shape = data => JSON.parse(JSON.stringify(Object.assign({}, data, { workerId: typeof data.workerId })));

    it("app-start carries Node's listening address {addressType, address, port}, as egg-cluster's does", async () => {
      const port = 17420;
      const theirs = await startMaster('egg-cluster', { workers: 2, port });
      child.kill('SIGTERM');
      await once(child, 'exit');
      const ours = await startMaster('egg-cluster-rs', { workers: 2, port });
      console.log('      egg-cluster app-start: %j\n      ours:                  %j', theirs.appStarts, ours.appStarts);
      assert.strictEqual(ours.appStarts.length, 2);
      // the master completes the last one in place with the protocol before later listeners see it
      const expected = [
        { workerId: 'number', address: { addressType: 4, address: null, port } },
        { workerId: 'number', address: { addressType: 4, address: null, port, protocol: 'http' } },
      ];
      assert.deepStrictEqual(theirs.appStarts.map(shape), expected);
      assert.deepStrictEqual(ours.appStarts.map(shape), expected);
      await checkPolicy('rr', port);
    });

    it('app-start for a unix socket path, as egg-cluster', async () => {
      const sock = path.join(os.tmpdir(), `egg-cluster-rs-listen-app-${process.pid}.sock`);
      fs.rmSync(sock, { force: true });
      try {
        const theirs = await startMaster('egg-cluster', { workers: 1 }, { LISTEN_APP_PATH: sock });
        child.kill('SIGTERM');
        await once(child, 'exit');
        fs.rmSync(sock, { force: true });
        const ours = await startMaster('egg-cluster-rs', { workers: 1 }, { LISTEN_APP_PATH: sock });
        console.log('      egg-cluster app-start: %j\n      ours:                  %j', theirs.appStarts, ours.appStarts);
        // Node reports port -1 for a pipe
        const expected = { workerId: 'number', address: { addressType: -1, address: sock, port: -1, protocol: 'http' } };
        assert.deepStrictEqual(theirs.appStarts.map(shape), [ expected ]);
        assert.deepStrictEqual(ours.appStarts.map(shape), [ expected ]);
        // egg-ready comes over IPC, the log line over the stdout pipe: it may arrive a moment later
        const started = new RegExp(`egg started on ${sock} \\(`);
        await waitFor(() => started.test(ours.stdout), 5000).catch(() => {});
        assert.match(ours.stdout, started);
        assert.strictEqual((await get({ socketPath: sock })).status, 200);
      } finally {
        fs.rmSync(sock, { force: true });
      }
    });

    // FAILS (src/listen/): egg-cluster's master (Node) removes the socket file when the app
    // stops, so the app starts again; ours leaves it and the next start exits 1 with
    // `bind EADDRINUSE <path>`
    it('a unix socket path is removed when the app stops, so it can start again', async () => {
      const sock = path.join(os.tmpdir(), `egg-cluster-rs-restart-${process.pid}.sock`);
      fs.rmSync(sock, { force: true });
      try {
        await startMaster('egg-cluster-rs', { workers: 1 }, { LISTEN_APP_PATH: sock });
        child.kill('SIGTERM');
        await once(child, 'exit');
        const left = fs.existsSync(sock);
        child = null;
        const again = await startMaster('egg-cluster-rs', { workers: 1 }, { LISTEN_APP_PATH: sock })
          .then(() => 'started', err => (/bind EADDRINUSE [^,]*/.exec(err.message) || [ err.message ])[0]);
        assert.deepStrictEqual({ left, again }, { left: false, again: 'started' });
      } finally {
        fs.rmSync(sock, { force: true });
      }
    });

    /**
     * Checks what the workers' servers got from the master under `policy`.
     * @param {String} policy - rr, none or reuseport
     * @param {Number} port - the app port
     */
    async function checkPolicy(policy, port) {
      const seen = new Map();
      for (let n = 0; n < 40 && seen.size < 2; n++) {
        const res = await get({ port, path: '/handle' });
        seen.set(res.pid, JSON.parse(res.body).fd);
      }
      assert.strictEqual(seen.size, 2);
      // rr: Node's round-robin stand-in (no fd) in the worker; none and reuseport: a real socket
      for (const fd of seen.values()) {
        if (policy === 'rr') assert.strictEqual(fd, null);
        else assert(fd > 0, `fd ${fd}`);
      }
      // reuseport: one listening socket per worker; rr and none: one for all
      const ss = execFileSync('ss', [ '-Hltn', `sport = :${port}` ], { encoding: 'utf8' }).trim().split('\n');
      assert.strictEqual(ss.length, policy === 'reuseport' ? 2 : 1, ss.join('\n'));
    }

    // rr (the default) is checked in the app-start test above
    [ 'none', 'reuseport' ].forEach((policy, i) => {
      it(`startCluster({schedulingPolicy: '${policy}'}) reaches the pool`, async () => {
        const port = 17421 + i;
        const out = await startMaster('egg-cluster-rs', { workers: 2, port, schedulingPolicy: policy });
        assert.strictEqual(out.appStarts.length, 2);
        await checkPolicy(policy, port);
      });
    });

    // the default policy (rr) has this test in test/app_worker.test.js ('exits 1 when the app port is taken')
    [ 'none', 'reuseport' ].forEach((policy, i) => {
      it(`EADDRINUSE under ${policy}: the app worker logs bind EADDRINUSE null:<port>, the master exits 1`, async () => {
        const port = 17426 + i;
        const blocker = net.createServer().listen(port);
        await once(blocker, 'listening');
        try {
          await coffee.fork(getFilepath('start-cluster.js'), [ JSON.stringify({ baseDir: APP, workers: 1, port, schedulingPolicy: policy }) ])
            .expect('code', 1)
            .expect('stderr', new RegExp(`\\[app_worker\\] server got error: bind EADDRINUSE null:${port}, code: EADDRINUSE`))
            .expect('stderr', /\[master\] app_worker#1:\d+ start fail, exiting with code:1/)
            .expect('stderr', /\[master\] exit with code:1/)
            .end();
        } finally {
          blocker.close();
        }
      });
    });
  });
});
