'use strict';

// startMode 'worker_threads': the agent and two app workers (`ports`) run as threads of the
// master, for egg 3 (egg-mock's mm.cluster, egg-cluster 2.4.0's thread mode) and egg 4
// (@eggjs/mock 6's mm.cluster, @eggjs/cluster 3.0.1's), with real egg apps and real threads.

const assert = require('assert');
const coffee = require('coffee');
const { getFilepath, waitFor, getJSON } = require('./utils');

const get = getJSON;

// GET /received on `port` every 100ms, in the background, until stopped
function pollReceived(port) {
  let stop = false;
  const state = { body: null };
  (async () => {
    while (!stop) {
      try {
        state.body = (await get(port, '/received')).body;
      } catch {
        // a thread being reforked: ask again
      }
      await new Promise(resolve => setTimeout(resolve, 100));
    }
  })();
  return { state, stop: () => { stop = true; } };
}

// resolves with /received of `port` once check(body) holds
async function waitReceived(port, check) {
  const poll = pollReceived(port);
  try {
    await waitFor(() => poll.state.body && check(poll.state.body), 20000);
    return poll.state.body;
  } catch (err) {
    throw new Error(`${err.message}, last /received on ${port}: ${JSON.stringify(poll.state.body)}`);
  } finally {
    poll.stop();
  }
}

const GENERATIONS = [
  {
    name: 'egg 3 (egg-cluster 2 thread mode)',
    mm: () => require('egg-mock'),
    // a framework on egg ^3 (test/fixtures/egg names itself egg 9.9.9, which reads as egg 4)
    framework: getFilepath('egg'),
    baseDir: getFilepath('apps/worker-threads'),
    ports: [ 17721, 17722 ],
    banner: /\[master\] =================== egg start =====================/,
    // egg-cluster 2 prints worker_threads.Worker#exitCode, which Node never sets
    deathCode: 'undefined',
    // egg-cluster 2 tells the app workers the agent's id only when the agent (re)starts after them
    agentIdsToApps: false,
  },
  {
    name: 'egg 4 (@eggjs/cluster 3 thread mode)',
    mm: () => require('@eggjs/mock').mm,
    framework: getFilepath('egg4'),
    baseDir: getFilepath('apps/worker-threads'),
    ports: [ 17731, 17732 ],
    banner: /\[master\] =================== egg4-framework start 🥚🥚🥚🥚 =====================/,
    // @eggjs/cluster 3's thread wrapper answers 0
    deathCode: '0',
    // @eggjs/cluster 3 tells each app worker the agent's id once it has started
    agentIdsToApps: true,
  },
];

describe('test/worker_threads.test.js', function() {
  this.timeout(120000);

  for (const generation of GENERATIONS) {
    describe(generation.name, () => {
      const [ port1, port2 ] = generation.ports;
      let app;
      let first;
      let second;
      before(async () => {
        app = generation.mm().cluster({
          baseDir: generation.baseDir,
          framework: generation.framework,
          cache: false,
          coverage: false,
          startMode: 'worker_threads',
          ports: generation.ports,
        });
        await app.ready();
        first = (await get(port1, '/')).body;
        second = (await get(port2, '/')).body;
      });
      after(() => app.close());

      it('answers HTTP on each port of `ports`, each from its own thread of the master', () => {
        const masterPid = app.process.pid;
        assert.deepStrictEqual([ first.pid, first.isMainThread, first.port ], [ masterPid, false, port1 ]);
        assert.deepStrictEqual([ second.pid, second.isMainThread, second.port ], [ masterPid, false, port2 ]);
        assert.notStrictEqual(first.threadId, second.threadId);
      });

      it('starts the agent and one app thread per port, with the upstream thread-mode lines', () => {
        const out = app.stdout;
        assert.match(out, generation.banner);
        assert.match(out, /"startMode":"worker_threads","ports":\[\d+,\d+\]/);
        assert.match(out, /\[master\] agent_worker#1:\d+ start with worker_threads\n/);
        assert.match(out, /\[master\] agent_worker#1:\d+ started \(\d+ms\)/);
        assert.match(out, new RegExp(`\\[master\\] app_worker#1 \\(tid:${first.threadId}\\) start\\n`));
        assert.match(out, new RegExp(`\\[master\\] app_worker#2 \\(tid:${second.threadId}\\) start\\n`));
        assert.match(out, new RegExp(`\\[master\\] app_worker#1:${first.threadId} started at ${port1}, remain [01] \\(\\d+ms\\)`));
        assert.match(out, new RegExp(`\\[master\\] app_worker#2:${second.threadId} started at ${port2}, remain [01] \\(\\d+ms\\)`));
        assert.match(out, /\[master\] \S+ started on http:\/\/127\.0\.0\.1:\d+ \(\d+ms\)/);
        // no process-mode lines
        assert.doesNotMatch(out, /start with clusterPort|start appWorker with args|cfork:master/);
      });

      it('app → agent → that app thread alone: sendToAgent, answered by sendTo its thread id', async () => {
        await get(port1, '/ping');
        const body = await waitReceived(port1, b => b.received.some(m => m.action === 'pong'));
        const pong = body.received.find(m => m.action === 'pong');
        // the agent is a thread too; egg 4's egg-pids told each app thread its id
        assert.strictEqual(typeof pong.data.agentThreadId, 'number');
        assert.deepStrictEqual(body.agentIds && body.agentIds.map(Number),
          generation.agentIdsToApps ? [ pong.data.agentThreadId ] : undefined);
        const other = (await get(port2, '/received')).body;
        assert.deepStrictEqual(other.received.filter(m => m.action === 'pong'), []);
      });

      it('agent → every app thread: sendToApp and broadcast', async () => {
        await get(port2, '/fan-out?id=f1');
        const want = [{ action: 'to-apps', data: { id: 'f1' } }, { action: 'to-all', data: { id: 'f1' } }];
        for (const port of generation.ports) {
          const body = await waitReceived(port, b => b.received.filter(m => m.data && m.data.id === 'f1').length === 2);
          assert.deepStrictEqual(body.received.filter(m => m.data && m.data.id === 'f1'), want);
        }
      });

      it('starts a new agent thread 1s after the agent exits, and the app threads reach it', async () => {
        const before = app.stdout.length;
        await get(port1, '/exit-agent');
        await waitFor(() => /\[master\] agent_worker#2:\d+ started \(\d+ms\)/.test(app.stdout.slice(before)), 30000);
        const out = app.stdout.slice(before);
        assert.match(app.stderr, /AgentWorkerDiedError: \[master\] agent_worker#1:\d+ died \(code: 1, signal: undefined\)/);
        assert.match(out, /\[master\] new agent_worker starting\.\.\./);
        const newAgent = Number(/\[master\] agent_worker#2:(\d+) start with worker_threads/.exec(out)[1]);
        // the new agent answers the app thread that pings it
        await get(port2, '/ping');
        const body = await waitReceived(port2, b => b.received.some(m => m.action === 'pong'));
        assert.strictEqual(body.received.find(m => m.action === 'pong').data.agentThreadId, newAgent);
        // every app thread was told the new agent's id (egg-pids on agent-start, both generations)
        assert.deepStrictEqual(body.agentIds.map(Number), [ newAgent ]);
      });

      it('forks an app thread that exits again after 1s, on the same port', async () => {
        const before = app.stdout.length;
        await get(port1, '/exit');
        let reforked;
        await waitFor(() => {
          const match = new RegExp('\\[master\\] app_worker#1 \\(tid:(\\d+)\\) start\\n').exec(app.stdout.slice(before));
          reforked = match && Number(match[1]);
          return reforked && new RegExp(`app_worker#1:${reforked} started at ${port1}`).test(app.stdout.slice(before));
        }, 30000);
        const out = app.stdout + app.stderr;
        assert.match(out, new RegExp(`AppWorkerDiedError: \\[master\\] app_worker#1:${first.threadId} died ` +
          `\\(code: ${generation.deathCode}, signal: undefined, suicide: true, state: dead\\), current workers: \\[${first.threadId},${second.threadId}\\]`));
        const answer = (await get(port1, '/')).body;
        assert.deepStrictEqual([ answer.pid, answer.threadId ], [ app.process.pid, reforked ]);
        assert.notStrictEqual(reforked, first.threadId);
      });

      it('closes: terminates the threads with the upstream lines, and the master exits 0', async () => {
        await app.close();
        assert.strictEqual(app.process.exitCode, 0);
        const out = app.stdout;
        assert.strictEqual(out.match(/\[master\] kill app worker#undefined \(worker_threads\) by worker\.terminate\(\)/g).length, 2);
        // the second agent: the first exited in an earlier test
        assert.match(out, /\[master\] kill agent worker#2 \(worker_threads\) by worker\.terminate\(\)/);
        assert.match(out, /\[master\] close done, exiting with code:0/);
        assert.match(out, /\[master\] exit with code:0/);
      });
    });
  }

  it('the Master emits agent-start, realport and app-start from threads, and reload() is unavailable', async () => {
    const script = getFilepath('threads-master.js');
    const options = { baseDir: getFilepath('apps/worker-threads'), framework: getFilepath('egg'), startMode: 'worker_threads', ports: [ 17741, 17742 ] };
    const { stdout } = await coffee.fork(script, [ JSON.stringify(options) ])
      .expect('code', 0)
      .expect('stdout', /event agent-start null/)
      .expect('stdout', /event realport {"port":17741,"protocol":"http"}/)
      .expect('stdout', /event realport {"port":17742,"protocol":"http"}/)
      .expect('stdout', /event app-start {"workerId":\d+,"address":{"address":"::","family":"IPv6","port":17741[,}]/)
      .expect('stdout', /event app-start {"workerId":\d+,"address":{"address":"::","family":"IPv6","port":17742[,}]/)
      .expect('stdout', /reload rejected: ERR_RELOAD_UNAVAILABLE \[master\] reload: not available with startMode "worker_threads"/)
      .expect('stdout', /\[master\] close done, exiting with code:0/)
      .end();
    assert.strictEqual(stdout.match(/event app-start/g).length, 2);
  });
});
