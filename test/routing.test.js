'use strict';

const assert = require('assert');
const { EventEmitter } = require('events');
const { Messenger } = require('../lib/messenger');
const { PoolHarness, MasterProcess, sleep } = require('./fixtures/pool/harness');

// How long a test waits to be sure a message did NOT arrive somewhere.
const QUIET = 400;

let seq = 0;
const unique = name => `${name}-${process.pid}-${++seq}`;

describe('test/routing.test.js', () => {
  describe('between an agent and three app workers, through a WorkerPool in this process', () => {
    let h;
    let master;
    let messenger;
    let agent;
    let apps;

    before(async () => {
      h = new PoolHarness();
      master = new EventEmitter();
      messenger = new Messenger(master, h.pool);
      agent = await h.fork('agent');
      apps = [];
      for (let i = 0; i < 3; i++) apps.push(await h.fork('app'));
    });

    after(() => {
      if (messenger) messenger.close();
      if (h) h.close();
    });

    const appPids = () => apps.map(a => a.pid);
    const allPids = () => [ agent.pid, ...appPids() ];

    it('an app worker sees cluster.isWorker true and cluster.worker.id equal to the id forkApp returned', () => {
      for (const app of apps) {
        assert.strictEqual(app.ready.isWorker, true);
        assert.strictEqual(app.ready.workerId, app.id);
      }
      assert.deepStrictEqual(apps.map(a => a.id), [ 1, 2, 3 ]);
    });

    it('the agent is a plain forked child, not a cluster worker', () => {
      assert.strictEqual(agent.ready.isWorker, false);
      assert.strictEqual(agent.ready.workerId, null);
    });

    it('NODE_CHANNEL_FD and NODE_UNIQUE_ID are consumed by Node, as with child_process.fork', () => {
      for (const w of [ agent, ...apps ]) assert.strictEqual(w.ready.channelFd, null);
    });

    it("every app worker emits Node's cluster 'online'", async () => {
      for (const app of apps) {
        await h.wait('online', w => w.pid === app.pid, 5000, `online of ${app.pid}`);
      }
    });

    it('a message from the agent without `to` reaches every app worker, stamped from agent', async () => {
      const action = unique('agent-to-apps');
      h.ctl(agent.pid, 'send', { msg: { action, data: { n: 1 } } });
      for (const pid of appPids()) {
        const got = await h.got(pid, m => m.action === action);
        assert.deepStrictEqual(got.msg, { action, data: { n: 1 }, from: 'agent', to: 'app' });
      }
      await sleep(QUIET);
      assert.deepStrictEqual(h.received(m => m.action === action).map(g => g.pid).sort(), appPids().sort());
    });

    it('a message from an app worker without `to` reaches the agent only, stamped from app', async () => {
      const action = unique('app-to-agent');
      h.ctl(apps[0].pid, 'send', { msg: { action, data: [ 1, 'two' ] } });
      const got = await h.got(agent.pid, m => m.action === action);
      assert.deepStrictEqual(got.msg, { action, data: [ 1, 'two' ], from: 'app', to: 'agent' });
      await sleep(QUIET);
      assert.deepStrictEqual(h.received(m => m.action === action).map(g => g.pid), [ agent.pid ]);
    });

    it('`to: app` from an app worker reaches every app worker, the sender too', async () => {
      const action = unique('app-to-apps');
      h.ctl(apps[1].pid, 'send', { msg: { action, data: 'all', to: 'app' } });
      for (const pid of appPids()) await h.got(pid, m => m.action === action && m.from === 'app');
      await sleep(QUIET);
      assert.deepStrictEqual(h.received(m => m.action === action).map(g => g.pid).sort(), appPids().sort());
    });

    it('`to: agent` from the agent reaches the agent itself', async () => {
      const action = unique('agent-to-agent');
      h.ctl(agent.pid, 'send', { msg: { action, to: 'agent' } });
      const got = await h.got(agent.pid, m => m.action === action);
      assert.strictEqual(got.msg.from, 'agent');
    });

    for (const [ name, receiver ] of [
      [ 'receiverPid as a string', pid => ({ receiverPid: String(pid) }) ],
      [ 'receiverPid as a number', pid => ({ receiverPid: pid }) ],
      [ 'receiverWorkerId', pid => ({ receiverWorkerId: String(pid) }) ],
    ]) {
      it(`${name} from an app worker reaches only the app worker with that pid`, async () => {
        const action = unique('app-to-one-app');
        const target = apps[2].pid;
        h.ctl(apps[0].pid, 'send', { msg: { action, data: name, ...receiver(target) } });
        const got = await h.got(target, m => m.action === action);
        assert.strictEqual(got.msg.from, 'app');
        assert.strictEqual(got.msg.to, 'app');
        assert.strictEqual(got.msg.data, name);
        await sleep(QUIET);
        assert.deepStrictEqual(h.received(m => m.action === action).map(g => g.pid), [ target ]);
      });
    }

    it("receiverPid naming the agent's pid reaches the agent, whatever `to` says", async () => {
      const action = unique('to-agent-by-pid');
      h.ctl(apps[1].pid, 'send', { msg: { action, to: 'app', receiverPid: String(agent.pid) } });
      const got = await h.got(agent.pid, m => m.action === action);
      assert.strictEqual(got.msg.to, 'agent');
      await sleep(QUIET);
      assert.deepStrictEqual(h.received(m => m.action === action).map(g => g.pid), [ agent.pid ]);
    });

    it('receiverPid from the agent reaches only that app worker', async () => {
      const action = unique('agent-to-one-app');
      h.ctl(agent.pid, 'send', { msg: { action, receiverPid: String(apps[1].pid) } });
      const got = await h.got(apps[1].pid, m => m.action === action);
      assert.strictEqual(got.msg.from, 'agent');
      await sleep(QUIET);
      assert.deepStrictEqual(h.received(m => m.action === action).map(g => g.pid), [ apps[1].pid ]);
    });

    it('a receiverPid that names no worker is delivered to nobody', async () => {
      const action = unique('to-nobody');
      h.ctl(agent.pid, 'send', { msg: { action, receiverPid: '999999999' } });
      await sleep(QUIET);
      assert.deepStrictEqual(h.received(m => m.action === action), []);
    });

    it('messenger.broadcast from the master reaches the agent and every app worker, from master', async () => {
      const action = unique('broadcast');
      messenger.broadcast(action, { all: true });
      for (const pid of allPids()) {
        const got = await h.got(pid, m => m.action === action);
        assert.deepStrictEqual(got.msg, { action, data: { all: true }, from: 'master', to: pid === agent.pid ? 'agent' : 'app' });
      }
      await sleep(QUIET);
      assert.strictEqual(h.received(m => m.action === action).length, 4);
    });

    it("a worker's messenger.broadcast reaches the agent and every app worker", async () => {
      const action = unique('worker-broadcast');
      h.ctl(apps[2].pid, 'messenger', { method: 'broadcast', args: [ action, 'b' ] });
      for (const pid of allPids()) await h.got(pid, m => m.action === action && m.from === 'app');
      await sleep(QUIET);
      assert.strictEqual(h.received(m => m.action === action).length, 4);
    });

    it('messenger.sendToApp and sendToAgent from the master reach only their kind', async () => {
      const toApps = unique('send-to-app');
      const toAgent = unique('send-to-agent');
      messenger.sendToApp(toApps, 1).sendToAgent(toAgent, 2);
      await h.got(agent.pid, m => m.action === toAgent && m.data === 2);
      for (const pid of appPids()) await h.got(pid, m => m.action === toApps && m.data === 1);
      await sleep(QUIET);
      assert.deepStrictEqual(h.received(m => m.action === toAgent).map(g => g.pid), [ agent.pid ]);
      assert.deepStrictEqual(h.received(m => m.action === toApps).map(g => g.pid).sort(), appPids().sort());
    });

    it('messenger.sendTo(pid) from the master reaches only that worker', async () => {
      const action = unique('send-to');
      messenger.sendTo(apps[0].pid, action, 'x');
      await h.got(apps[0].pid, m => m.action === action && m.from === 'master');
      messenger.sendTo(agent.pid, action, 'y');
      await h.got(agent.pid, m => m.action === action && m.data === 'y');
      await sleep(QUIET);
      assert.deepStrictEqual(h.received(m => m.action === action).map(g => g.pid), [ apps[0].pid, agent.pid ]);
    });

    it('messenger.sendRandom from the master sends each message to exactly one live app worker', async () => {
      const action = unique('random-from-master');
      for (let i = 0; i < 30; i++) messenger.sendRandom(action, i);
      await h.wait('message', () => h.received(m => m.action === action).length === 30, 10000, '30 random messages');
      await sleep(QUIET);
      const got = h.received(m => m.action === action);
      assert.strictEqual(got.length, 30);
      assert.deepStrictEqual(got.map(g => g.msg.data).sort((a, b) => a - b), [ ...Array(30).keys() ]);
      for (const g of got) assert(appPids().includes(g.pid), `${g.pid} is an app worker`);
      assert(new Set(got.map(g => g.pid)).size > 1, 'more than one app worker was picked');
    });

    it("a worker's messenger.sendRandom picks among the pids of the last egg-pids", async () => {
      messenger.broadcast('egg-pids', appPids());
      for (const pid of allPids()) {
        await h.got(pid, m => m.action === 'egg-pids');
        h.ctl(pid, 'opids');
        const { opids } = await h.report('opids', pid);
        assert.deepStrictEqual(opids, appPids());
      }
      const action = unique('random-from-agent');
      h.ctl(agent.pid, 'messenger', { method: 'sendRandom', args: [ action, 'r' ], times: 30 });
      await h.wait('message', () => h.received(m => m.action === action).length === 30, 10000, '30 random messages');
      await sleep(QUIET);
      const got = h.received(m => m.action === action);
      assert.strictEqual(got.length, 30);
      for (const g of got) {
        assert(appPids().includes(g.pid), `${g.pid} is an app worker`);
        assert.strictEqual(g.msg.from, 'agent');
      }
      assert(new Set(got.map(g => g.pid)).size > 1, 'more than one app worker was picked');
    });

    it('`to: master` from an app worker is emitted on the master as (action, data), from app', async () => {
      const action = unique('app-to-master');
      const heard = new Promise(resolve => master.once(action, resolve));
      const event = h.wait('message', e => e.msg.action === action);
      h.ctl(apps[0].pid, 'send', { msg: { action, data: { deep: [ 1, { x: null }] }, to: 'master' } });
      assert.deepStrictEqual(await heard, { deep: [ 1, { x: null }] });
      const { msg, from } = await event;
      assert.strictEqual(msg.from, 'app');
      assert.strictEqual(from.pid, apps[0].pid);
    });

    it('`to: master` from the agent is emitted on the master', async () => {
      const action = unique('agent-to-master');
      const heard = new Promise(resolve => master.once(action, resolve));
      h.ctl(agent.pid, 'send', { msg: { action, data: 'from the agent', to: 'master' } });
      assert.strictEqual(await heard, 'from the agent');
    });

    it("receiverPid naming the master's pid is emitted on the master", async () => {
      const action = unique('to-master-by-pid');
      const heard = new Promise(resolve => master.once(action, resolve));
      h.ctl(apps[2].pid, 'send', { msg: { action, data: 7, to: 'agent', receiverPid: process.pid } });
      assert.strictEqual(await heard, 7);
      await sleep(QUIET);
      assert.deepStrictEqual(h.received(m => m.action === action), []);
    });

    it("a string message process.send('x') arrives as {action: 'x', data: 'x'}", async () => {
      const action = unique('bare-string');
      h.ctl(apps[0].pid, 'send', { msg: action });
      const got = await h.got(agent.pid, m => m.action === action);
      assert.deepStrictEqual(got.msg, { action, data: action, from: 'app', to: 'agent' });
    });

    it('a string message from the agent reaches every app worker', async () => {
      const action = unique('bare-string-agent');
      h.ctl(agent.pid, 'send', { msg: action });
      for (const pid of appPids()) {
        const got = await h.got(pid, m => m.action === action);
        assert.deepStrictEqual(got.msg, { action, data: action, from: 'agent', to: 'app' });
      }
    });

    it("an empty `to` follows the default rule, as egg-cluster's falsy check and our master Messenger do", async () => {
      const action = unique('empty-to');
      h.ctl(apps[0].pid, 'send', { msg: { action, to: '' } });
      await h.got(agent.pid, m => m.action === action, 3000, 'the message at the agent');
    });

    it('a worker cannot spoof `from`: the master stamps the channel it came on', async () => {
      const action = unique('spoof');
      h.ctl(apps[0].pid, 'send', { msg: { action, data: 1, from: 'parent', to: 'agent' } });
      const got = await h.got(agent.pid, m => m.action === action);
      assert.strictEqual(got.msg.from, 'app');
    });

    it('a worker claiming `from: agent` is still routed by the rules of an app worker', async () => {
      const action = unique('spoof-default');
      // from agent, no `to` would go to the apps; from app it goes to the agent
      h.ctl(apps[1].pid, 'send', { msg: { action, from: 'agent' } });
      const got = await h.got(agent.pid, m => m.action === action);
      assert.strictEqual(got.msg.from, 'app');
      await sleep(QUIET);
      assert.deepStrictEqual(h.received(m => m.action === action).map(g => g.pid), [ agent.pid ]);
    });

    it("a worker claiming `from: master` does not reach the master's listeners as the master", async () => {
      const action = unique('spoof-master');
      const event = h.wait('message', e => e.msg.action === action);
      h.ctl(agent.pid, 'send', { msg: { action, from: 'master', to: 'master' } });
      const { msg } = await event;
      assert.strictEqual(msg.from, 'agent');
    });

    it("messenger.sendTo(the master's own pid) is emitted on the master", async () => {
      const action = unique('send-to-self');
      const heard = new Promise(resolve => master.once(action, resolve));
      messenger.sendTo(process.pid, action, { self: true });
      assert.deepStrictEqual(await heard, { self: true });
    });

    it('`to: parent` in a master without a parent is dropped, and routing goes on', async () => {
      const action = unique('no-parent');
      const parentEvent = h.wait('parent', e => e.msg.action === action);
      h.ctl(apps[0].pid, 'send', { msg: { action, to: 'parent' } });
      const { msg } = await parentEvent;
      assert.strictEqual(msg.from, 'app');
      assert.strictEqual(messenger.hasParent, false);
      const after = unique('after-no-parent');
      h.ctl(apps[0].pid, 'send', { msg: { action: after } });
      await h.got(agent.pid, m => m.action === after);
    });

    it('messages from one worker arrive at another in the order they were sent', async () => {
      const action = unique('order');
      const msgs = [];
      for (let i = 0; i < 200; i++) msgs.push({ action, data: i });
      h.ctl(apps[0].pid, 'sendAll', { msgs });
      await h.wait('message', () => h.received(m => m.action === action).length === 200, 10000, '200 messages');
      assert.deepStrictEqual(h.received(m => m.action === action).map(g => g.msg.data), [ ...Array(200).keys() ]);
    });
  });

  describe('when the agent is replaced', () => {
    let h;

    afterEach(() => {
      if (h) h.close();
    });

    it('messages to the agent reach the new agent, not the dead one', async () => {
      h = new PoolHarness();
      const old = await h.fork('agent');
      const app = await h.fork('app');
      h.ctl(old.pid, 'exit', { code: 0 });
      await h.exit(old.pid);
      const agent = await h.fork('agent');
      assert.strictEqual(agent.id, 2);
      const action = unique('to-new-agent');
      h.ctl(app.pid, 'send', { msg: { action } });
      const got = await h.got(agent.pid, m => m.action === action);
      assert.strictEqual(got.msg.from, 'app');
      h.ctl(agent.pid, 'send', { msg: { action: `${action}-back` } });
      await h.got(app.pid, m => m.action === `${action}-back` && m.from === 'agent');
    });

    it('a message to the agent while there is none is dropped, and the next agent does not get it later', async () => {
      h = new PoolHarness();
      const app = await h.fork('app');
      const action = unique('no-agent');
      h.ctl(app.pid, 'send', { msg: { action } });
      await sleep(QUIET);
      const agent = await h.fork('agent');
      const after = unique('agent-now');
      h.ctl(app.pid, 'send', { msg: { action: after } });
      await h.got(agent.pid, m => m.action === after);
      assert.deepStrictEqual(h.received(m => m.action === action), []);
    });
  });

  describe('through a forked master whose parent is this test', () => {
    let m;
    let info;

    before(async () => {
      m = new MasterProcess({ apps: 2 });
      info = await m.ready();
    });

    after(() => {
      if (m) m.kill('SIGTERM');
    });

    it('`to: parent` from an app worker arrives at the parent, stamped from app', async () => {
      const action = unique('app-to-parent');
      m.ctl(info.apps[0].pid, 'send', { msg: { action, data: { hello: 'parent' }, to: 'parent' } });
      const msg = await m.wait('message', x => x.action === action);
      assert.deepStrictEqual(msg, { action, data: { hello: 'parent' }, to: 'parent', from: 'app' });
    });

    it('`to: parent` from the agent arrives at the parent, stamped from agent', async () => {
      const action = unique('agent-to-parent');
      m.ctl(info.agent.pid, 'send', { msg: { action, data: 'a', to: 'parent' } });
      const msg = await m.wait('message', x => x.action === action);
      assert.strictEqual(msg.from, 'agent');
      assert.strictEqual(msg.data, 'a');
    });

    it('a message from the parent without `to` is emitted on the master', async () => {
      m.send({ action: 'ping', data: { n: 42 } });
      const msg = await m.wait('message', x => x.action === 'pong');
      assert.deepStrictEqual(msg.data, { n: 42 });
    });

    it('`to: app` from the parent reaches every app worker, stamped from parent', async () => {
      const action = unique('parent-to-apps');
      m.send({ action, data: 'p', to: 'app' });
      for (const app of info.apps) {
        const got = await m.heard('got', d => d.pid === app.pid && d.msg.action === action);
        assert.deepStrictEqual(got.msg, { action, data: 'p', to: 'app', from: 'parent' });
      }
    });

    it('`to: agent` from the parent reaches the agent', async () => {
      const action = unique('parent-to-agent');
      m.send({ action, data: 'q', to: 'agent' });
      const got = await m.heard('got', d => d.pid === info.agent.pid && d.msg.action === action);
      assert.strictEqual(got.msg.from, 'parent');
    });

    it('receiverPid from the parent reaches only that app worker', async () => {
      const action = unique('parent-to-one');
      m.send({ action, receiverPid: String(info.apps[1].pid) });
      await m.heard('got', d => d.pid === info.apps[1].pid && d.msg.action === action);
      await sleep(QUIET);
      assert.strictEqual(m.all('message', x => x.action === 'master-heard' && x.data.action === 'got' &&
        x.data.data.msg.action === action).length, 1);
    });

    it("a string message 'x' from the parent is emitted on the master as ('x', 'x')", async () => {
      const action = unique('parent-string');
      m.send(action);
      const heard = await m.heard(action);
      assert.strictEqual(heard, action);
    });

    it("a parent cannot spoof `from`: the master stamps 'parent'", async () => {
      const action = unique('parent-spoof');
      m.send({ action, from: 'agent', to: 'app' });
      const got = await m.heard('got', d => d.pid === info.apps[0].pid && d.msg.action === action);
      assert.strictEqual(got.msg.from, 'parent');
    });
  });
});
