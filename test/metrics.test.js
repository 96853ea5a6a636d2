'use strict';

// Metrics (issue 14, part 2): the core's counters seen from JavaScript (`pool.metrics()`,
// `master.metrics()`) and from Prometheus (`GET /metrics`, served by the core itself). Counts
// are checked exactly: every message here is sent by a quiet fixture worker
// (test/fixtures/metrics/worker.js) whose bytes are known, and each test compares the counters
// before and after.

const assert = require('assert');
const crypto = require('crypto');
const http = require('http');
const net = require('net');
const path = require('path');
const { fork } = require('child_process');
const parsePrometheus = require('parse-prometheus-text-format');
const { PoolHarness, waitUntil } = require('./fixtures/pool/harness');
const { freePort } = require('../binding');
const { getFilepath } = require('./utils');

const WORKER = path.join(__dirname, 'fixtures', 'metrics', 'worker.js');
const BLOCKED_MASTER = path.join(__dirname, 'fixtures', 'metrics', 'blocked_master.js');

/** Bytes of a message on the channel: Node's json serialization is JSON text and a newline. */
const wire = msg => Buffer.byteLength(JSON.stringify(msg)) + 1;

const FLOWS = [ 'messagesIn', 'bytesIn', 'messagesOut', 'bytesOut' ];

/** The flows and drops of worker `pid` (or of the totals) in `after` minus `before`. */
function delta(before, after, pid) {
  const pick = m => (pid === undefined ? m.total : m.workers.find(w => w.pid === pid));
  const a = pick(after);
  const b = pick(before) || { messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0, dropped: {} };
  const out = {};
  for (const k of FLOWS) out[k] = a[k] - b[k];
  out.dropped = {};
  for (const k of Object.keys(a.dropped)) out.dropped[k] = a.dropped[k] - (b.dropped[k] || 0);
  out.badLines = a.badLines - (b.badLines || 0);
  return out;
}

const noDrops = { queueFull: 0, targetGone: 0, noTarget: 0, tooBig: 0, badLine: 0, masterBacklog: 0 };

/** GET (or another method) on the metrics endpoint: {status, headers, body}. */
function request(port, { method = 'GET', path: urlPath = '/metrics' } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, agent: false }, res => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', chunk => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.setTimeout(10000, () => req.destroy(new Error('no answer in 10 s')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Writes `chunks` (Buffers; `gap` ms apart) on a raw connection and resolves with the status code
 * of the answer, or 'closed' when the server closed without one (never 'timeout': the server
 * must end every connection itself within `limit` ms).
 */
function raw(port, chunks, { gap = 0, limit = 15000 } = {}) {
  return new Promise(resolve => {
    const socket = net.connect(port, '127.0.0.1');
    let got = '';
    let done = false;
    let timer = null;
    const finish = value => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    timer = setTimeout(() => finish('timeout'), limit);
    socket.on('data', chunk => { got += chunk.toString('latin1'); });
    socket.on('error', () => {}); // a reset: judged on what arrived
    socket.on('close', () => {
      const status = /^HTTP\/1\.1 (\d{3}) /.exec(got);
      finish(status ? Number(status[1]) : 'closed');
    });
    socket.on('connect', async () => {
      for (const chunk of chunks) {
        if (socket.destroyed) return;
        socket.write(chunk);
        if (gap) await new Promise(r => setTimeout(r, gap));
      }
    });
  });
}

describe('test/metrics.test.js', () => {
  let h;

  afterEach(() => {
    if (h) h.close();
    h = null;
  });

  async function cluster(options, env = {}) {
    h = new PoolHarness(options);
    const agent = await h.fork('agent', { exec: WORKER, env });
    const a = await h.fork('app', { exec: WORKER, env });
    const b = await h.fork('app', { exec: WORKER, env });
    return { agent, a, b };
  }

  describe('pool.metrics()', () => {
    it('counts the messages and bytes each worker sent and was sent, exactly', async () => {
      const { agent, a, b } = await cluster();
      const N = 50;
      // `from` and `to` already hold what the core writes there: relayed bytes = sent bytes
      const m = { action: 'm', data: 'x'.repeat(100) + '\u00e9', to: 'app', from: 'agent' };
      const expectCtl = { action: 'ctl', data: { op: 'expect', n: N } };
      const sendCtl = { action: 'ctl', data: { op: 'send', msg: m, times: N } };
      const before = h.pool.metrics();
      h.pool.sendToWorker(a.pid, expectCtl);
      h.pool.sendToWorker(b.pid, expectCtl);
      h.pool.sendToWorker(agent.pid, sendCtl);
      await h.report('sent', agent.pid);
      await h.report('reached', a.pid);
      await h.report('reached', b.pid);
      const after = h.pool.metrics();

      const sent = { action: 'sent', data: { pid: agent.pid, times: N }, to: 'master' };
      const reached = pid => ({ action: 'reached', data: { pid, count: N }, to: 'master' });
      assert.deepStrictEqual(delta(before, after, agent.pid), {
        messagesIn: N + 1, bytesIn: N * wire(m) + wire(sent),
        messagesOut: 1, bytesOut: wire(sendCtl),
        dropped: noDrops, badLines: 0,
      });
      for (const app of [ a, b ]) {
        assert.deepStrictEqual(delta(before, after, app.pid), {
          messagesIn: 1, bytesIn: wire(reached(app.pid)),
          messagesOut: N + 1, bytesOut: N * wire(m) + wire(expectCtl),
          dropped: noDrops, badLines: 0,
        });
      }
      assert.deepStrictEqual(delta(before, after), {
        messagesIn: N + 3, bytesIn: N * wire(m) + wire(sent) + wire(reached(a.pid)) + wire(reached(b.pid)),
        messagesOut: 2 * N + 3, bytesOut: 2 * N * wire(m) + 2 * wire(expectCtl) + wire(sendCtl),
        dropped: noDrops, badLines: 0,
      });
      // the labels and the master
      const byPid = pid => after.workers.find(w => w.pid === pid);
      assert.deepStrictEqual([ byPid(agent.pid).kind, byPid(a.pid).kind ], [ 'agent', 'app' ]);
      assert.strictEqual(byPid(a.pid).slot, undefined);
      assert.strictEqual(byPid(a.pid).restarts, undefined);
      assert(byPid(a.pid).uptime > 0);
      assert.strictEqual(after.master.pid, process.pid);
      assert(after.master.rss > 10 << 20, `rss ${after.master.rss}`);
      assert(after.master.cpuUser + after.master.cpuSystem > 0);
      assert.deepStrictEqual([ after.total.agentForks, after.total.appForks, after.total.reforks ], [ 1, 2, 0 ]);
    });

    it('totals keep the counts of a worker that has exited', async () => {
      const { agent, a } = await cluster();
      h.pool.sendToWorker(agent.pid, { action: 'ctl', data: { op: 'send', msg: { action: 'x', to: 'master' }, times: 7 } });
      await h.report('sent', agent.pid);
      const before = h.pool.metrics();
      h.pool.kill(agent.pid, 'SIGKILL');
      await h.exit(agent.pid);
      const after = h.pool.metrics();
      assert.strictEqual(after.workers.find(w => w.pid === agent.pid), undefined);
      assert.deepStrictEqual(FLOWS.map(k => after.total[k]), FLOWS.map(k => before.total[k]));
      assert(after.workers.find(w => w.pid === a.pid));
    });

    it('counts messages relayed to a worker that stopped reading: queued + dropped (queue_full) = sent, and it receives exactly the queued ones', async () => {
      const { agent, a, b } = await cluster({ queueBytes: 64 * 1024, stallTimeout: 200 });
      const N = 300;
      // ~10 KiB each to `a` only: the queue and the socket's buffer hold a part of them
      const m = { action: 'm', data: 'q'.repeat(10 * 1024), to: 'app', from: 'agent', receiverPid: a.pid };
      h.pool.kill(a.pid, 'SIGSTOP');
      const before = h.pool.metrics();
      h.pool.sendToWorker(agent.pid, { action: 'ctl', data: { op: 'send', msg: m, times: N } });
      await h.report('sent', agent.pid, 30000);
      const after = h.pool.metrics();
      const d = delta(before, after, a.pid);
      assert(d.dropped.queueFull > 0, 'some were dropped');
      assert(d.messagesOut > 0, 'some were queued');
      assert.strictEqual(d.messagesOut + d.dropped.queueFull, N);
      assert.strictEqual(d.bytesOut, d.messagesOut * wire(m));
      assert.deepStrictEqual({ ...d.dropped, queueFull: 0 }, noDrops);
      assert.strictEqual(delta(before, after).dropped.queueFull, d.dropped.queueFull);
      assert.strictEqual(delta(before, after, b.pid).messagesOut, 0);
      assert.strictEqual(delta(before, after, agent.pid).messagesIn, N + 1);
      // let it read: it gets exactly what was queued
      h.pool.kill(a.pid, 'SIGCONT');
      await waitUntil(() => h.pool.metrics().workers.find(w => w.pid === a.pid).queueBytes === 0, 10000, 'a drained queue');
      h.pool.send({ action: 'count-now', to: 'app', receiverPid: a.pid });
      const { count } = await h.report('count', a.pid);
      assert.strictEqual(count, d.messagesOut);
    });

    it('counts drops by reason: target_gone, no_target, too_big and bad_line, exactly', async () => {
      const { agent, a, b } = await cluster({ maxLineBytes: 64 * 1024 }, { METRICS_STAY_ON_DISCONNECT: '1' });
      // the agent's channel closes; the agent itself stays
      h.pool.disconnect(agent.pid);
      await waitUntil(() => h.pool.metrics().workers.find(w => w.pid === agent.pid).state === 'disconnected', 5000, 'a disconnected agent');
      const before = h.pool.metrics();
      // target_gone: 3 sends to the agent that left
      for (let i = 0; i < 3; i++) assert.strictEqual(h.pool.sendToWorker(agent.pid, { action: 'late', data: i }), false);
      // no_target: 4 for the agent that left, 2 for a pid nobody has
      const toAgent = { action: 'n', to: 'agent' };
      h.pool.sendToWorker(b.pid, { action: 'ctl', data: { op: 'send', msg: toAgent, times: 4 } });
      await h.report('sent', b.pid);
      h.pool.sendToWorker(b.pid, { action: 'ctl', data: { op: 'send', msg: { action: 'n', receiverPid: 999999999 }, times: 2 } });
      await h.wait('message', e => e.msg.action === 'sent' && e.msg.data.pid === b.pid && h.all('message', x => x.msg.action === 'sent' && x.msg.data.pid === b.pid).length === 2);
      // too_big: 3 lines over 64 KiB; bad_line: 7 malformed lines
      const big = `{"action":"big","data":"${'b'.repeat(100 * 1024)}"}\n`;
      h.pool.sendToWorker(a.pid, { action: 'ctl', data: { op: 'raw', text: big.repeat(3) + 'garbage\n'.repeat(7) } });
      await h.report('sent', a.pid);
      const after = h.pool.metrics();
      assert.deepStrictEqual(delta(before, after, agent.pid).dropped, { ...noDrops, targetGone: 3 });
      assert.deepStrictEqual(delta(before, after, b.pid).dropped, { ...noDrops, noTarget: 6 });
      assert.deepStrictEqual(delta(before, after, a.pid).dropped, { ...noDrops, tooBig: 3, badLine: 7 });
      assert.strictEqual(delta(before, after, a.pid).badLines, 7);
      assert.deepStrictEqual(delta(before, after).dropped, { ...noDrops, targetGone: 3, noTarget: 6, tooBig: 3, badLine: 7 });
      assert.strictEqual(after.total.droppedTotal - before.total.droppedTotal, 19);
      // a message to nobody from the master counts on the master (the totals)
      h.pool.send({ action: 'n', receiverPid: 999999999 });
      assert.strictEqual(h.pool.metrics().total.dropped.noTarget, after.total.dropped.noTarget + 1);
    });

    it('reports relays per second over the last 10 s', async () => {
      const { agent } = await cluster();
      h.pool.sendToWorker(agent.pid, { action: 'ctl', data: { op: 'send', msg: { action: 'm', to: 'app' }, times: 500 } });
      await h.report('sent', agent.pid);
      // 1000 relayed (500 to each app) within the first seconds: the 1 s sampler sees them
      await waitUntil(() => h.pool.metrics().total.relaysPerSecond > 0, 5000, 'a relay rate');
      const { relaysPerSecond: rate, messagesOut } = h.pool.metrics().total;
      // every message queued so far (1000 relays and the control messages) over the span between
      // two samples, which are 1 s apart give or take the sampler's scheduling (a 1003.7/s was seen
      // from 1003 messages): never more than all of them over 0.9 s
      assert(rate > 0 && rate <= messagesOut / 0.9, `rate ${rate}, ${messagesOut} messages queued in all`);
    });
  });

  describe('GET /metrics', () => {
    it('serves the same figures in Prometheus text format, parsed by a Prometheus parser', async () => {
      const { agent, a } = await cluster({ metrics: { port: 0 } });
      const { host, port } = h.pool.metricsAddress();
      assert.strictEqual(host, '127.0.0.1');
      assert(port > 0);
      h.pool.sendToWorker(agent.pid, { action: 'ctl', data: { op: 'send', msg: { action: 'm', to: 'app' }, times: 5 } });
      await h.report('sent', agent.pid);
      const res = await request(port);
      const snapshot = h.pool.metrics();
      assert.strictEqual(res.status, 200);
      assert.strictEqual(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
      // every line is a comment or `name{labels} value`
      for (const line of res.body.trimEnd().split('\n')) {
        assert.match(line, /^(# (HELP|TYPE) egg_cluster_\w+ .+|egg_cluster_\w+(\{(\w+="[^"]*",?)+\})? -?[0-9.e+-]+)$/, line);
      }
      const families = new Map(parsePrometheus(res.body).map(f => [ f.name, f ]));
      for (const [ name, f ] of families) {
        assert.strictEqual(f.type === 'COUNTER', name.endsWith('_total'), name);
        assert(f.help, name);
      }
      const value = (name, labels) => {
        const f = families.get(name);
        assert(f, `${name} missing`);
        const s = f.metrics.find(x => Object.entries(labels).every(([ k, v ]) => x.labels && x.labels[k] === v));
        assert(s, `${name} ${JSON.stringify(labels)} missing`);
        return Number(s.value);
      };
      const agentLabels = { pid: String(agent.pid), kind: 'agent' };
      const w = snapshot.workers.find(x => x.pid === agent.pid);
      assert.strictEqual(value('egg_cluster_worker_messages_in_total', agentLabels), w.messagesIn);
      assert.strictEqual(value('egg_cluster_worker_bytes_in_total', agentLabels), w.bytesIn);
      const appW = snapshot.workers.find(x => x.pid === a.pid);
      assert.strictEqual(value('egg_cluster_worker_messages_out_total', { pid: String(a.pid), kind: 'app' }), appW.messagesOut);
      assert.strictEqual(value('egg_cluster_worker_dropped_total', { ...agentLabels, reason: 'queue_full' }), 0);
      assert.strictEqual(value('egg_cluster_worker_info', { ...agentLabels, state: 'online' }), 1);
      assert.strictEqual(value('egg_cluster_messages_in_total', {}), snapshot.total.messagesIn);
      assert.strictEqual(value('egg_cluster_dropped_total', { reason: 'bad_line' }), 0);
      assert.strictEqual(value('egg_cluster_forks_total', { kind: 'app' }), 2);
      assert.strictEqual(value('egg_cluster_reforks_total', {}), 0);
      assert(value('egg_cluster_master_resident_memory_bytes', {}) > 0);
      for (const name of [ 'egg_cluster_relays_per_second', 'egg_cluster_queue_bytes', 'egg_cluster_master_cpu_seconds_total', 'egg_cluster_worker_uptime_seconds' ]) {
        assert(families.has(name), name);
      }
    });

    it('answers HEAD without a body, other paths with 404 and other methods with 405', async () => {
      await cluster({ metrics: { port: 0 } });
      const { port } = h.pool.metricsAddress();
      const head = await request(port, { method: 'HEAD' });
      assert.deepStrictEqual([ head.status, head.body ], [ 200, '' ]);
      assert.strictEqual((await request(port, { path: '/' })).status, 404);
      assert.strictEqual((await request(port, { path: '/metrics/x' })).status, 404);
      const post = await request(port, { method: 'POST' });
      assert.deepStrictEqual([ post.status, post.headers.allow ], [ 405, 'GET, HEAD' ]);
    });

    it('refuses garbage with a 4xx or a close, and afterwards still answers and the pool still relays', async () => {
      const { agent, a } = await cluster({ metrics: { port: 0 } });
      const { port } = h.pool.metricsAddress();
      const slowloris = Buffer.from('GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(200)).toJSON().data.map(b => Buffer.from([ b ]));
      const results = await Promise.all([
        raw(port, [ crypto.randomBytes(4096) ]),
        raw(port, [ Buffer.from('GET /metrics HTTP/1.1\r\nX-Big: ' + 'h'.repeat(100 * 1024) + '\r\n\r\n') ]),
        raw(port, [ Buffer.from('GET\r\n\r\n') ]),
        raw(port, [ Buffer.from('GET  HTTP/1.1\r\n\r\n') ]),
        raw(port, [ Buffer.from('\r\n\r\n') ]),
        // a slowloris: one byte every 100 ms, never finishing its head
        raw(port, slowloris, { gap: 100 }),
      ]);
      const [ random, bigHead, noPath, emptyPath, empty, slow ] = results;
      for (const r of [ random, noPath, emptyPath, empty ]) assert(r === 400 || r === 'closed', `got ${r}`);
      assert(bigHead === 431 || bigHead === 'closed', `big head: ${bigHead}`);
      assert(slow === 408 || slow === 'closed', `slowloris: ${slow}`);
      assert.strictEqual((await request(port)).status, 200);
      h.pool.sendToWorker(a.pid, { action: 'ctl', data: { op: 'expect', n: 1 } });
      h.pool.sendToWorker(agent.pid, { action: 'ctl', data: { op: 'send', msg: { action: 'm', to: 'app' }, times: 1 } });
      await h.report('reached', a.pid);
    });

    it('survives 2,000 connections opened at once and answers afterwards', async () => {
      const { agent, a } = await cluster({ metrics: { port: 0 } });
      const { port } = h.pool.metricsAddress();
      const outcomes = await Promise.all(Array.from({ length: 2000 }, () =>
        raw(port, [ Buffer.from('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n') ], { limit: 30000 })));
      const tally = {};
      for (const o of outcomes) tally[o] = (tally[o] || 0) + 1;
      assert(!tally.timeout, `every connection was ended: ${JSON.stringify(tally)}`);
      assert(tally[200] > 0, JSON.stringify(tally));
      assert.strictEqual((await request(port)).status, 200);
      h.pool.sendToWorker(a.pid, { action: 'ctl', data: { op: 'expect', n: 1 } });
      h.pool.sendToWorker(agent.pid, { action: 'ctl', data: { op: 'send', msg: { action: 'm', to: 'app' }, times: 1 } });
      await h.report('reached', a.pid);
    });

    it('answers while the JavaScript thread of the process that owns the pool is blocked', async () => {
      const child = fork(BLOCKED_MASTER, [], { stdio: [ 'ignore', 'inherit', 'inherit', 'ipc' ] });
      try {
        const messages = [];
        const next = action => new Promise(resolve => {
          const found = messages.find(m => m.action === action);
          if (found) return resolve(found);
          const on = msg => {
            if (msg.action === action) {
              child.off('message', on);
              resolve(msg);
            }
          };
          child.on('message', on);
        });
        child.on('message', msg => messages.push(msg));
        const { data: { port, agent } } = await next('address');
        child.send({ action: 'block', ms: 6000 });
        await next('blocking');
        child.send({ action: 'ping' });
        let ponged = false;
        next('pong').then(() => { ponged = true; });
        const res = await request(port);
        assert.strictEqual(res.status, 200);
        assert.match(res.body, new RegExp(`egg_cluster_worker_info\\{pid="${agent}",kind="agent",state="online"\\} 1`));
        assert.strictEqual(ponged, false, 'the scrape was answered while the thread was blocked');
        await next('pong');
      } finally {
        child.kill('SIGKILL');
      }
    });

    it('a port in use fails the constructor with EADDRINUSE, a bad host or port with a TypeError', () => {
      const server = net.createServer();
      return new Promise(resolve => server.listen(0, '127.0.0.1', resolve)).then(() => {
        const { port } = server.address();
        assert.throws(() => new PoolHarness({ metrics: { port } }), err => {
          assert.strictEqual(err.code, 'EADDRINUSE');
          assert.match(err.message, new RegExp(`address already in use 127\\.0\\.0\\.1:${port}`));
          return true;
        });
        assert.throws(() => new PoolHarness({ metrics: { host: 'localhost' } }), TypeError);
        assert.throws(() => new PoolHarness({ metrics: { port: 70000 } }), TypeError);
        assert.throws(() => new PoolHarness({ metrics: { port: 1.5 } }), TypeError);
      }).finally(() => server.close());
    });
  });

  describe('master.metrics()', () => {
    it("labels app workers with egg's slot and restarts, and counts a refork", async () => {
      const metricsPort = freePort();
      const options = {
        baseDir: getFilepath('apps/app-server'), framework: getFilepath('egg'), workers: 2,
        port: freePort(), env: 'prod', metrics: { port: metricsPort },
      };
      const child = fork(getFilepath('start-cluster.js'), [ JSON.stringify(options) ], { stdio: [ 'ignore', 'ignore', 'ignore', 'ipc' ] });
      try {
        await new Promise((resolve, reject) => {
          child.on('message', msg => msg && msg.action === 'egg-ready' && resolve());
          child.on('exit', code => reject(new Error(`master exited with ${code}`)));
        });
        const scrape = async () => parsePrometheus((await request(metricsPort)).body);
        const restarts = families => families.find(f => f.name === 'egg_cluster_worker_restarts').metrics;
        const reforks = families => Number(families.find(f => f.name === 'egg_cluster_reforks_total').metrics[0].value);
        let families = await scrape();
        const slots = restarts(families).map(s => [ s.labels.slot, s.value ]).sort();
        assert.deepStrictEqual(slots, [[ '0', '0' ], [ '1', '0' ]]);
        assert.strictEqual(reforks(families), 0);
        // kill the worker of slot 1: the master reforks it (production)
        const victim = restarts(families).find(s => s.labels.slot === '1').labels.pid;
        process.kill(Number(victim), 'SIGKILL');
        const end = Date.now() + 30000;
        for (;;) {
          families = await scrape();
          const slot1 = restarts(families).filter(s => s.labels.slot === '1');
          if (slot1.length === 1 && slot1[0].labels.pid !== victim && slot1[0].value === '1') break;
          if (Date.now() > end) throw new Error(`no refork of slot 1: ${JSON.stringify(restarts(families))}`);
          await new Promise(r => setTimeout(r, 200));
        }
        assert.strictEqual(reforks(families), 1);
        const app = families.find(f => f.name === 'egg_cluster_forks_total').metrics.find(s => s.labels.kind === 'app');
        assert.strictEqual(app.value, '3');
      } finally {
        child.kill('SIGKILL');
      }
    });
  });
});
