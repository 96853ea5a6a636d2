'use strict';

// Recipients are decided when a send is made, and a tick's sends keep their call order: a
// message to every app worker never reaches one forked after it (egg-cluster delivers it to
// nobody: Master#onAgentStart sends egg-pids and agent-start to 'app' before the first app
// worker is forked), and routed and raw sends to one worker arrive in the order they were made.

const assert = require('assert');
const { PoolHarness, WORKER } = require('./fixtures/pool/harness');

describe('test/route_order.test.js', () => {
  let h;

  afterEach(() => {
    if (h) h.close();
    h = null;
  });

  it('a message to every app worker reaches none forked after it was sent (20 forks, each right after a send)', async () => {
    h = new PoolHarness();
    const sentBefore = new Map(); // pid → the last `seq` sent before it was forked
    for (let i = 0; i < 20; i++) {
      h.pool.send({ action: 'seq', to: 'app', data: i });
      sentBefore.set(h.pool.forkApp({ exec: WORKER }).pid, i);
    }
    await Promise.all([ ...sentBefore.keys() ].map(pid => h.ready(pid)));
    // a marker sent now reaches every one of them after everything sent before it
    h.pool.send({ action: 'marker', to: 'app' });
    for (const pid of sentBefore.keys()) await h.got(pid, m => m.action === 'marker');
    const early = h.received(m => m.action === 'seq').filter(g => g.msg.data <= sentBefore.get(g.pid));
    assert.deepStrictEqual(early, []);
    // and every worker got each seq sent after it was forked, once
    for (const [ pid, last ] of sentBefore) {
      const got = h.received(m => m.action === 'seq').filter(g => g.pid === pid).map(g => g.msg.data);
      const expected = [];
      for (let i = last + 1; i < 20; i++) expected.push(i);
      assert.deepStrictEqual(got, expected, `worker ${pid}`);
    }
  });

  it('routed sends and raw sends to one worker arrive in call order (200 pairs)', async () => {
    h = new PoolHarness();
    const app = await h.fork('app');
    for (let i = 0; i < 200; i++) {
      h.pool.send({ action: 'ord', to: 'app', receiverPid: String(app.pid), data: 2 * i });
      assert(h.pool.sendToWorker(app.pid, { action: 'ord', data: 2 * i + 1 }));
    }
    await h.got(app.pid, m => m.action === 'ord' && m.data === 399);
    const order = h.received(m => m.action === 'ord').map(g => g.msg.data);
    assert.deepStrictEqual(order, Array.from({ length: 400 }, (_, i) => i));
  });
});
