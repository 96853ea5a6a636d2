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

  /** Forks `count` workers with this env and waits until each reported every listen. */
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

  describe('balance under load: 4 workers, 3000 requests, 48 at a time, a new connection each', () => {
    const ports = { rr: 17400, none: 17401, reuseport: 17402 };
    for (const policy of POLICIES) {
      it(`${policy}: every worker serves${policy === 'none' ? '' : ', within 2× of each other'}`, async () => {
        p = new Pool(policy);
        const port = ports[policy];
        // a CPU-bound millisecond per request: the load is sustained and a busy worker is busy
        const pids = await p.start(4, { LISTEN: JSON.stringify([{ port }]), SPIN_MS: '1' });
        const result = await load({ request: { port }, total: 3000, concurrency: 48 });
        const s = shares(result.counts, pids);
        console.log('      [%s] %d ok, %d failed in %dms (%d req/s); per worker: %s; max/min %s',
          policy, result.ok, result.failures.length, result.ms, Math.round(result.ok * 1000 / result.ms), s.text, s.ratio.toFixed(2));
        assert.strictEqual(result.failures.length, 0, JSON.stringify(result.failures.slice(0, 5)));
        assert.deepStrictEqual([ ...result.counts.keys() ].sort(), pids.slice().sort());
        for (const n of s.values) assert(n > 0, `a worker served nothing: ${s.text}`);
        if (policy !== 'none') assert(s.ratio <= 2, `unbalanced: ${s.text}`);
      });
    }
  });

  describe('rr: a worker SIGKILLed under load', () => {
    it('fails only requests it already had; connections queued in the master go to live workers', async () => {
      p = new Pool('rr');
      const port = 17403;
      // slow CPU-bound handlers: the master always has connections queued and one in flight per worker
      const pids = await p.start(4, { LISTEN: JSON.stringify([{ port }]), SPIN_MS: '3', REPORT_CONNS: '1' });
      const victim = pids[0];
      const servedBy = new Map();
      let killedAt = 0;
      const afterKill = new Map();
      const result = await load({
        request: { port },
        total: 2400,
        concurrency: 64,
        onResponse: (res, index) => {
          servedBy.set(res.pid, (servedBy.get(res.pid) || 0) + 1);
          if (killedAt) afterKill.set(res.pid, (afterKill.get(res.pid) || 0) + 1);
          if (index === 800 && !killedAt) {
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
      console.log('      [rr kill] %d ok, %d failed (%j); victim %d took %d connections, answered %d, so %d were in flight on it; per worker: %s; after the kill: %j',
        result.ok, result.failures.length, [ ...new Set(result.failures.map(f => f.code)) ], victim, taken,
        servedBy.get(victim) || 0, unanswered, s.text, [ ...afterKill ]);
      assert(killedAt, 'the worker was killed under load');
      assert(result.failures.length <= unanswered,
        `${result.failures.length} requests failed but only ${unanswered} were in flight on the killed worker`);
      // a connection lost in the master would hang until the client's timeout
      for (const f of result.failures) assert.notStrictEqual(f.code, 'ETIMEDOUT');
      // the survivors kept serving
      for (const pid of pids.slice(1)) assert(afterKill.get(pid) > 0, `worker ${pid} served nothing after the kill`);
      assert.strictEqual(result.ok + result.failures.length, 2400);
      // and the port still works
      for (let i = 0; i < 10; i++) assert.notStrictEqual((await get({ port })).pid, victim);
    });
  });

  for (const policy of POLICIES) {
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
        assert.strictEqual(result.failures.length, 0);
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
  }
});
