'use strict';

const fs = require('fs');
const path = require('path');
const assert = require('assert');
const { once } = require('events');
const mm = require('egg-mock');
const request = require('supertest');
const { cluster, alive, getFilepath, waitFor } = require('./utils');

// resolves once the cluster's output matches `pattern` (stdout and stderr, workers' included)
const output = (app, pattern, timeout = 20000) => waitFor(() => pattern.test(app.stdout + app.stderr), timeout)
  .catch(err => {
    err.message += `: ${pattern} never appeared`;
    throw err;
  });

describe('test/master.test.js', () => {
  let app;

  afterEach(mm.restore);

  describe('start', () => {
    afterEach(() => app && app.close());

    it('starts in local env and hides the debug-level master lines', async () => {
      mm.env('local');
      app = cluster('apps/master-worker-started');
      await app.expect('code', 0)
        .expect('stdout', /\[master\] node version v\d+/)
        .expect('stdout', /\[master\] egg version 3\.99\.0/)
        .expect('stdout', /\[master\] agent_worker#1:\d+ started \(\d+ms\)/)
        .expect('stdout', /\[master\] app_worker#1:\d+ listening on {"addressType":4,"address":null,"port":\d+}/)
        .expect('stdout', /INFO \d+ \[master\] egg started on http:\/\/127\.0\.0\.1:\d+ \(\d+ms\)\n/)
        .notExpect('stdout', /\[master\] agent_worker#1:\d+ start with clusterPort:\d+/)
        .notExpect('stdout', /egg start =====/)
        .end();
      await request(`http://127.0.0.1:${app.port}`).get('/').expect(200, 'hi egg');
    });

    it('starts in prod env and prints every master line at INFO', async () => {
      mm.env('prod');
      app = cluster('apps/master-worker-started', { workers: 2 });
      await app.expect('code', 0)
        .expect('stdout', /\[master\] =================== egg start =====================/)
        .expect('stdout', /\[master\] start with options:\n{\n {2}"framework": /)
        .expect('stdout', /\[master\] start with env: isProduction: true, EGG_SERVER_ENV: prod, NODE_ENV: /)
        .expect('stdout', /\[master\] agent_worker#1:\d+ start with clusterPort:\d+/)
        .expect('stdout', /\[master\] start appWorker with args \["{\\"framework\\":/)
        .expect('stdout', /\[master\] app_worker#1:\d+ start, state: none, current workers: \["1","2"\]/)
        .expect('stdout', /\[master\] app_worker#2:\d+ start, state: none, current workers: \["1","2"\]/)
        .expect('stdout', /\[master\] app_worker#\d:\d+ started at \d+, remain 1 \(\d+ms\)/)
        .expect('stdout', /\[master\] app_worker#\d:\d+ started at \d+, remain 0 \(\d+ms\)/)
        .expect('stdout', /\[master\] egg started on http:\/\/127\.0\.0\.1:\d+/)
        .end();
    });

    it('prints process.env.HOST in the started line', async () => {
      mm.env('prod');
      mm(process.env, 'HOST', 'xxx.com');
      app = cluster('apps/master-worker-started');
      await app.expect('code', 0).expect('stdout', /egg started on http:\/\/xxx\.com:\d+/).end();
    });

    it('ignores HOST=0.0.0.0 in the started line', async () => {
      mm.env('prod');
      mm(process.env, 'HOST', '0.0.0.0');
      app = cluster('apps/master-worker-started');
      await app.expect('code', 0).expect('stdout', /egg started on http:\/\/127\.0\.0\.1:\d+/).end();
    });

    it('starts with reusePort', async () => {
      mm.env('local');
      app = cluster('apps/master-worker-started', { reusePort: true });
      await app.expect('code', 0).expect('stdout', /egg started on http:\/\/.+:\d+/).end();
      await request(`http://127.0.0.1:${app.port}`).get('/').expect(200, 'hi egg');
    });

    it('starts 4 workers with reusePort in prod env, counting each worker once', async () => {
      mm.env('prod');
      app = cluster('apps/master-worker-started', { reusePort: true, workers: 4 });
      await app.expect('code', 0).expect('stdout', /egg started on http:\/\/.+:\d+/).end();
      assert.strictEqual(app.stdout.match(/\[master\] app_worker#\d:\d+ started at \d+/g).length, 4);
      assert.match(app.stdout, /remain 0/);
      assert.doesNotMatch(app.stdout, /remain -/);
    });

    [ 'none', 'reuseport' ].forEach(schedulingPolicy => {
      it(`serves with schedulingPolicy ${schedulingPolicy}`, async () => {
        app = cluster('apps/master-worker-started', { schedulingPolicy, workers: 2 });
        await app.expect('code', 0).expect('stdout', /egg started on http:\/\/127\.0\.0\.1:\d+/).end();
        for (let i = 0; i < 4; i++) {
          await request(`http://127.0.0.1:${app.port}`).get('/').expect(200, 'hi egg');
        }
      });
    });

    it('passes unknown options through to the Application and the Agent', async () => {
      app = cluster('apps/options-pass-through', { foo: true });
      await app.expect('code', 0)
        .expect('stdout', /app options foo: true/)
        .expect('stdout', /agent options foo: true/)
        .end();
    });

    it('loads options.require in the agent and in app workers', async () => {
      app = cluster('apps/options-require', { require: getFilepath('apps/options-require/inject.js') });
      await app.expect('code', 0)
        .expect('stdout', /### inject application/)
        .expect('stdout', /### inject agent/)
        .end();
    });

    it('serves https from config.cluster.https', async () => {
      app = cluster('apps/https-server');
      await app.expect('code', 0).expect('stdout', /egg started on https:\/\/127\.0\.0\.1:\d+/).end();
      const res = await fetchInsecure(`https://127.0.0.1:${app.port}/`);
      assert.strictEqual(res, 'done');
    });
  });

  describe('close', () => {
    afterEach(() => app.close());

    it('closes app workers then the agent on SIGTERM, and exits 0', async () => {
      mm.env('local');
      mm(process.env, 'EGG_APP_WORKER_LOGGER_LEVEL', 'INFO');
      mm(process.env, 'EGG_AGENT_WORKER_LOGGER_LEVEL', 'INFO');
      mm(process.env, 'EGG_MASTER_LOGGER_LEVEL', 'DEBUG');
      app = cluster('apps/master-worker-started');
      await app.expect('code', 0).end();

      // 'close' comes once the master and every worker holding its stdio are gone
      const closed = once(app.proc, 'close');
      app.proc.kill('SIGTERM');
      const [ code ] = await once(app.proc, 'exit');
      await closed;
      assert.strictEqual(code, 0);
      const { stdout, stderr } = app;
      assert.match(stdout, /INFO \d+ \[master\] master is killed by signal SIGTERM, closing/);
      assert.match(stdout, /\[master\] system memory: total \d+, free \d+/);
      assert.match(stdout, /\[master\] process info: heap_limit \d+, heap_used \d+/);
      assert.match(stdout, /INFO \d+ \[master\] send kill SIGTERM to app workers, will exit with code:0 after 5000ms/);
      assert.match(stdout, /INFO \d+ \[master\] send kill SIGTERM to agent worker, will exit with code:0 after 5000ms/);
      assert.match(stdout, /INFO \d+ \[master\] wait 5000ms/);
      assert.match(stdout, /DEBUG \d+ \[master\] kill agent worker with signal SIGTERM/);
      assert.match(stdout, /DEBUG \d+ \[master\] close done, exiting with code:0/);
      assert.match(stdout, /INFO \d+ \[master\] exit with code:0/);
      assert.match(stdout, /INFO \d+ \[app_worker\] receive signal SIGTERM, exiting with code:0/);
      assert.match(stdout, /INFO \d+ \[app_worker\] exit with code:0/);
      assert.match(stdout, /INFO \d+ \[agent_worker\] receive signal SIGTERM, exiting with code:0/);
      assert.match(stdout, /INFO \d+ \[agent_worker\] exit with code:0/);
      assert.doesNotMatch(stderr, /receive disconnect event/);
      assert.doesNotMatch(stderr, /AppWorkerDiedError|AgentWorkerDiedError/);
      // app workers are closed before the agent
      assert(stdout.indexOf('[app_worker] exit with code:0') < stdout.indexOf('[agent_worker] receive signal SIGTERM'));
    });

    [ 'SIGINT', 'SIGQUIT' ].forEach(signal => {
      it(`closes on ${signal}`, async () => {
        app = cluster('apps/master-worker-started');
        await app.expect('code', 0).end();
        app.proc.kill(signal);
        const [ code ] = await once(app.proc, 'exit');
        assert.strictEqual(code, 0);
        assert.match(app.stdout, new RegExp(`\\[master\\] master is killed by signal ${signal}, closing`));
        assert.match(app.stdout, /\[master\] exit with code:0/);
      });
    });

    it('takes the close timeout from EGG_MASTER_CLOSE_TIMEOUT', async () => {
      mm(process.env, 'EGG_MASTER_CLOSE_TIMEOUT', 1000);
      app = cluster('apps/master-worker-started');
      await app.expect('code', 0).end();
      app.proc.kill('SIGTERM');
      await once(app.proc, 'exit');
      assert.match(app.stdout, /INFO \d+ \[master\] wait 1000ms/);
      assert.match(app.stdout, /INFO \d+ \[master\] exit with code:0/);
    });

    it('gives app workers EGG_APP_CLOSE_TIMEOUT, then the agent EGG_AGENT_CLOSE_TIMEOUT', async () => {
      mm(process.env, 'EGG_APP_CLOSE_TIMEOUT', 1000);
      mm(process.env, 'EGG_AGENT_CLOSE_TIMEOUT', 1500);
      app = cluster('apps/worker-close-timeout');
      await app.expect('code', 0).end();
      app.proc.kill('SIGTERM');
      const [ code ] = await once(app.proc, 'exit');
      assert.strictEqual(code, 0);
      const appClose = Number(app.stdout.match(/app worker start close: (\d+)/)[1]);
      const agentClose = Number(app.stdout.match(/agent worker start close: (\d+)/)[1]);
      assert(agentClose - appClose >= 1000, `agent closed ${agentClose - appClose}ms after the app workers`);
      assert.match(app.stdout, /\[master\] wait 1000ms/);
      assert.match(app.stdout, /\[master\] wait 1500ms/);
      assert.doesNotMatch(app.stdout, /never called after timeout/);
    });

    it('lets app.close() run until the master\'s timeout, past graceful-process\'s 5s default', async () => {
      mm(process.env, 'EGG_APP_WORKER_LOGGER_LEVEL', 'INFO');
      mm(process.env, 'EGG_APP_CLOSE_TIMEOUT', 7000);
      mm(process.env, 'EGG_AGENT_CLOSE_TIMEOUT', 500);
      app = cluster('apps/worker-close-timeout');
      await app.expect('code', 0).end();
      app.proc.kill('SIGTERM');
      await once(app.proc, 'exit');
      const appClose = Number(app.stdout.match(/app worker start close: (\d+)/)[1]);
      const agentClose = Number(app.stdout.match(/agent worker start close: (\d+)/)[1]);
      assert(agentClose - appClose >= 7000, `agent closed ${agentClose - appClose}ms after the app workers`);
      assert.doesNotMatch(app.stdout + app.stderr, /\[app_worker\] beforeExit fail/);
    });

    it('terminates the processes app workers started', async () => {
      app = cluster('apps/sub-process');
      await app.expect('code', 0).end();
      await output(app, /worker1 \[\d+\] started/);
      await output(app, /worker2 \[\d+\] started/);
      // 'close' comes once the master and everything holding its stdio are gone
      const closed = once(app.proc, 'close');
      app.proc.kill('SIGTERM');
      await closed;
      const pid1 = app.stdout.match(/worker1 \[(\d+)\] started/)[1];
      const pid2 = app.stdout.match(/worker2 \[(\d+)\] started/)[1];
      assert.match(app.stdout, /worker1 on sigterm and exit/);
      assert.match(app.stdout, /worker2 on sigterm and exit/);
      assert(!alive(pid1) && !alive(pid2));
    });

    it('kills the processes that ignore SIGTERM after the timeout', async () => {
      mm(process.env, 'SUB_PROCESS_MODE', 'stubborn');
      mm(process.env, 'EGG_APP_CLOSE_TIMEOUT', 1000);
      app = cluster('apps/sub-process');
      await app.expect('code', 0).end();
      await output(app, /worker1 \[\d+\] started/);
      await output(app, /worker2 \[\d+\] started/);
      // 'close' comes once the master and everything holding its stdio are gone
      const closed = once(app.proc, 'close');
      app.proc.kill('SIGTERM');
      await closed;
      const pid1 = app.stdout.match(/worker1 \[(\d+)\] started/)[1];
      assert.match(app.stdout, /worker1 on sigterm and not exit/);
      assert.match(app.stdout, /\[master\] exit with code:0/);
      assert(!alive(pid1));
    });

    it('lets the agent and app workers exit by themselves when the master is SIGKILLed', async () => {
      app = cluster('apps/master-worker-started', { workers: 2 });
      await app.expect('code', 0).end();
      // 'close' comes once every worker holding the master's stdio has left too
      const closed = once(app.proc, 'close');
      app.proc.kill('SIGKILL');
      await closed;
      assert.doesNotMatch(app.stdout, /\[master\] master is killed by signal/);
      assert.doesNotMatch(app.stdout, /\[master\] exit with code/);
      assert.match(app.stderr, /\[app_worker\] receive disconnect event in cluster fork mode, exitedAfterDisconnect:false/);
      assert.match(app.stderr, /\[agent_worker\] receive disconnect event on child_process fork mode, exiting with code:110/);
      assert.match(app.stderr, /\[agent_worker\] exit with code:110/);
    });
  });

  describe('pidFile', () => {
    const runDir = getFilepath('apps/master-worker-started/run');
    const pidFile = path.join(runDir, 'pid');

    beforeEach(() => fs.rmSync(runDir, { force: true, recursive: true }));
    afterEach(() => app.close());

    it('writes the master pid and removes the file on exit', async () => {
      app = cluster('apps/master-worker-started', { pidFile });
      await app.expect('code', 0).end();
      assert.strictEqual(fs.readFileSync(pidFile, 'utf8'), String(app.proc.pid));
      app.proc.kill('SIGTERM');
      await once(app.proc, 'exit');
      assert(!fs.existsSync(pidFile));
    });

    it('exits 0 when the pid file is already gone', async () => {
      app = cluster('apps/master-worker-started', { pidFile });
      await app.expect('code', 0).end();
      fs.unlinkSync(pidFile);
      app.proc.kill('SIGTERM');
      const [ code ] = await once(app.proc, 'exit');
      assert.strictEqual(code, 0);
      assert.doesNotMatch(app.stderr, /delete pidfile/);
    });
  });

  describe('messenger', () => {
    afterEach(() => app.close());

    it('routes parent → app and parent → agent', async () => {
      app = cluster('apps/messenger');
      await app.end();
      app.proc.send({ action: 'parent2app', data: 'parent -> app', to: 'app' });
      app.proc.send({ action: 'parent2agent', data: 'parent -> agent', to: 'agent' });
      await output(app, /app: parent -> app/);
      await output(app, /agent: parent -> agent/);
      assert.match(app.stdout, /app: parent -> app/);
      assert.match(app.stdout, /agent: parent -> agent/);
    });

    it('routes app → parent and agent → parent', async () => {
      app = cluster('apps/messenger');
      const received = new Set();
      setImmediate(() => app.proc.on('message', msg => {
        if (msg && msg.to === 'parent') received.add(`${msg.from}:${msg.action}`);
      }));
      await app.end();
      await waitFor(() => received.has('app:app2parent') && received.has('agent:agent2parent'));
      assert(received.has('app:app2parent'), [ ...received ].join());
      assert(received.has('agent:agent2parent'), [ ...received ].join());
    });

    it('routes app ↔ agent, bare strings and sendTo by pid', async () => {
      app = cluster('apps/messenger');
      await app.end();
      for (const line of [ /agent: app -> agent/, /app: agent -> app/, /app: agent2appbystring/, /agent: app2agentbystring/,
        /app sendTo app done: from app/, /app sendTo agent done: from app/, /agent sendTo app done: from agent/,
        /agent sendTo agent done: from agent/ ]) {
        await output(app, line);
      }
      assert.match(app.stdout, /agent: app -> agent/);
      assert.match(app.stdout, /app: agent -> app/);
      assert.match(app.stdout, /app: agent2appbystring/);
      assert.match(app.stdout, /agent: app2agentbystring/);
      assert.match(app.stdout, /app sendTo app done: from app/);
      assert.match(app.stdout, /app sendTo agent done: from app/);
      assert.match(app.stdout, /agent sendTo app done: from agent/);
      assert.match(app.stdout, /agent sendTo agent done: from agent/);
    });

    it('routes sendTo between app workers, sendRandom, broadcast, and parent → one app by pid', async () => {
      app = cluster('apps/messenger-pairs', { workers: 2 });
      await app.end();
      // everything the agent starts 300 ms after egg-ready has arrived
      await waitFor(() => (app.stdout.match(/app \d+ got app broadcast from/g) || []).length === 4 &&
        (app.stdout.match(/agent got app broadcast from/g) || []).length === 2 &&
        /agent got its own broadcast/.test(app.stdout) && /got sendRandom/.test(app.stdout) &&
        (app.stdout.match(/got sendTo from app/g) || []).length === 2 &&
        new Set([ ...app.stdout.matchAll(/app (\d+) got agent broadcast/g) ].map(m => m[1])).size === 2);
      const pids = [ ...new Set([ ...app.stdout.matchAll(/app (\d+) got agent broadcast/g) ].map(m => Number(m[1]))) ];
      assert.strictEqual(pids.length, 2, app.stdout);
      const [ a, b ] = pids;
      // sendTo reaches the other app worker, and only it
      assert.match(app.stdout, new RegExp(`app ${a} got sendTo from app ${b}`));
      assert.match(app.stdout, new RegExp(`app ${b} got sendTo from app ${a}`));
      assert.strictEqual(app.stdout.match(/got sendTo from app/g).length, 2);
      // sendRandom: exactly one app worker
      assert.strictEqual(app.stdout.match(/got sendRandom/g).length, 1);
      // broadcast: every app worker and the agent
      assert.strictEqual(app.stdout.match(/app \d+ got app broadcast from/g).length, 4);
      assert.strictEqual(app.stdout.match(/agent got app broadcast from/g).length, 2);
      assert.match(app.stdout, /agent got its own broadcast/);
      // the parent reaches one app worker by pid
      app.proc.send({ action: 'parent2one', data: 'hello', receiverPid: String(b) });
      await output(app, new RegExp(`app ${b} got parent message hello`));
      assert.match(app.stdout, new RegExp(`app ${b} got parent message hello`));
      assert.doesNotMatch(app.stdout, new RegExp(`app ${a} got parent message`));
    });

    it('sends to every app worker', async () => {
      app = cluster('apps/send-to-multiapp', { workers: 3 });
      await app.end();
      await waitFor(() => (app.stdout.match(/\d+ got/g) || []).length >= 3);
      assert.strictEqual(app.stdout.match(/\d+ got/g).length, 3);
    });
  });

  describe('egg-ready', () => {
    let readyMsg;

    before(() => {
      mm.env('default');
      app = cluster('apps/egg-ready');
      setImmediate(() => app.proc.on('message', msg => {
        if (msg && msg.action === 'egg-ready') readyMsg = msg;
      }));
      return app.ready();
    });
    after(() => app.close());

    it('tells the parent the port, address and protocol', async () => {
      await waitFor(() => readyMsg);
      assert.strictEqual(readyMsg.to, 'parent');
      assert.deepStrictEqual(readyMsg.data, {
        port: app.port,
        address: `http://127.0.0.1:${app.port}`,
        protocol: 'http',
      });
    });

    it('gives the options to the agent and app workers', () => {
      assert.match(app.stdout, /agent receive egg-ready, with 1 workers/);
      assert.match(app.stdout, /app receive egg-ready, worker 1/);
      assert.match(app.stdout, /app egg-ready options: workers=1, clusterPort=\d+/);
    });

    // each counts from what the app has printed so far: neither needs the other to run first
    const appReadyIds = () => (app.stdout.match(/app receive egg-ready, worker \d+/g) || []).map(line => Number(line.split(' ').pop()));
    const agentReadyCount = () => (app.stdout.match(/agent receive egg-ready/g) || []).length;

    it('sends egg-ready to a reforked app worker', async () => {
      const before = appReadyIds();
      await request(`http://127.0.0.1:${app.port}`).get('/exception-app').expect(200);
      await waitFor(() => appReadyIds().length === before.length + 1);
      const reforked = appReadyIds().pop();
      assert(!before.includes(reforked), `worker ${reforked} had egg-ready already`);
      assert.strictEqual(reforked, Math.max(...before) + 1);
    });

    it('sends egg-ready to a reforked agent', async () => {
      const before = agentReadyCount();
      await request(`http://127.0.0.1:${app.port}`).get('/exception-agent').expect(200);
      await waitFor(() => agentReadyCount() === before + 1);
      assert.strictEqual(agentReadyCount(), before + 1);
    });
  });

  describe('egg-pids', () => {
    afterEach(() => app.close());

    it('tells the agent the listening app workers, after every change', async () => {
      mm.env('default');
      app = cluster('apps/pid', { workers: 2 });
      await app.ready();
      await output(app, /#2 agent get 2 workers \[\d+,\d+\]/);
      assert.match(app.stdout, /#1 agent get 1 workers \[\d+\]/);
      assert.match(app.stdout, /#2 agent get 2 workers \[\d+,\d+\]/);

      await request(`http://127.0.0.1:${app.port}`).get('/exit').expect(200);
      await output(app, /#4 agent get 2 workers \[\d+,\d+\]/);
      assert.match(app.stdout, /#3 agent get 1 workers \[\d+\]/);
      assert.match(app.stdout, /#4 agent get 2 workers \[\d+,\d+\]/);
    });

    it('tells app workers [] when the agent dies, then the new agent pid', async () => {
      mm.env('default');
      app = cluster('apps/pid');
      await app.ready();
      app.proc.send({ to: 'agent', action: 'kill-agent' });
      await output(app, /#2 app get 1 workers \[\d+\]/);
      await output(app, /#1 agent get 1 workers \[\d+\][\s\S]+#1 agent get 1 workers \[\d+\]/);
      // the first agent's pid went out before any app worker was forked
      assert.match(app.stdout, /#1 app get 0 workers \[\]/);
      assert.match(app.stdout, /#2 app get 1 workers \[\d+\]/);
      // the new agent hears of the app worker straight away
      assert.match(app.stdout, /#1 agent get 1 workers \[\d+\][\s\S]+#1 agent get 1 workers \[\d+\]/);
    });
  });

  describe('debug', () => {
    afterEach(() => app.close());

    it('gives the agent port 5800 and app workers the ports after the master\'s', async () => {
      const debugMessages = [];
      app = cluster('apps/debug-port', { workers: 2, opt: { execArgv: [ '--inspect=9000' ] } });
      setImmediate(() => app.proc.on('message', msg => {
        if (msg && msg.action === 'debug') debugMessages.push(msg);
      }));
      await app.expect('code', 0)
        .expect('stderr', /Debugger listening on .*:9000/)
        .expect('stderr', /Debugger listening on .*:5800/)
        .expect('stderr', /Debugger listening on .*:9001/)
        .expect('stderr', /Debugger listening on .*:9002/)
        .expect('stdout', /debug port of agent is 5800/)
        .expect('stdout', /debug port of app is 9001/)
        .expect('stdout', /debug port of app is 9002/)
        .end();
      const agent = debugMessages.filter(msg => msg.from === 'agent').map(msg => msg.data.debugPort);
      const apps = debugMessages.filter(msg => msg.from === 'app').map(msg => msg.data.debugPort);
      assert.deepStrictEqual(agent, [ 5800 ]);
      assert.deepStrictEqual(apps, [ 9001, 9002 ]);
      assert(debugMessages.every(msg => msg.to === 'parent' && msg.data.pid > 0));
    });

    it('sends no debug message without --inspect', async () => {
      let debugMessage = false;
      app = cluster('apps/egg-ready');
      setImmediate(() => app.proc.on('message', msg => {
        if (msg && msg.action === 'debug') debugMessage = true;
      }));
      await app.expect('code', 0).end();
      assert.strictEqual(debugMessage, false);
    });

    it('closes the cluster when the debugger kills an app worker', async () => {
      let workerPid;
      app = cluster('apps/egg-ready', { opt: { execArgv: [ '--inspect=9100' ] } });
      setImmediate(() => app.proc.on('message', msg => {
        if (msg && msg.action === 'debug' && msg.from === 'app') workerPid = msg.data.pid;
        if (msg && msg.action === 'egg-ready') process.kill(workerPid, 'SIGKILL');
      }));
      await app.end();
      const [ code ] = await once(app.proc, 'exit');
      assert.strictEqual(code, 0);
      assert.match(app.stderr, /\[master\] app_worker#1:\d+ died \(code: .*, signal: SIGKILL/);
      assert.match(app.stderr, /\[master\] worker kill by debugger, exiting\.\.\./);
      assert.doesNotMatch(app.stderr, /AppWorkerDiedError/);
      assert.match(app.stdout, /\[master\] exit with code:0/);
    });
  });

  describe('reload-worker', () => {
    before(() => {
      app = cluster('apps/reload-worker', { workers: 2 });
      return app.ready();
    });
    after(() => app.close());

    it('replaces every app worker', async () => {
      app.proc.send({ to: 'master', action: 'reload-worker' });
      for (const line of [ /\[master\] app_worker#1:\d+ disconnect/, /\[master\] app_worker#2:\d+ disconnect/,
        /\[master\] app_worker#4:\d+ started at/ ]) {
        await output(app, line, 30000);
      }
      assert.match(app.stdout, /\[master\] app_worker#1:\d+ disconnect/);
      assert.match(app.stdout, /\[master\] app_worker#2:\d+ disconnect/);
      assert.match(app.stdout, /\[master\] app_worker#4:\d+ started at/);
      assert.doesNotMatch(app.stderr, /AppWorkerDiedError/);
      await request(`http://127.0.0.1:${app.port}`).get('/').expect(200, /worker [34]/);
    });
  });

  describe('sticky', () => {
    before(() => {
      app = cluster('apps/sticky', { sticky: true, workers: 2 });
      return app.ready();
    });
    after(() => app.close());

    it('accepts on the app port and serves from the sticky worker port', async () => {
      assert.match(app.stdout, /egg started on http:\/\/127\.0\.0\.1:\d+ \(\d+ms\) with STICKY MODE!/);
      const first = await request(`http://127.0.0.1:${app.port}`).get('/').expect(200);
      const second = await request(`http://127.0.0.1:${app.port}`).get('/').expect(200);
      assert.strictEqual(first.text, second.text);
    });
  });

  describe('health check', () => {
    const startedFile = getFilepath('apps/check-status/logs/started');

    beforeEach(() => fs.rmSync(startedFile, { force: true }));
    afterEach(() => fs.rmSync(startedFile, { force: true }));
    afterEach(() => app.close());

    it('exits 1 in production when no app worker is left for three checks', async function() {
      this.timeout(90000);
      mm.env('prod');
      app = cluster('apps/check-status');
      await app.ready();
      fs.mkdirSync(path.dirname(startedFile), { recursive: true });
      fs.writeFileSync(startedFile, '');
      app.proc.send({ to: 'app', action: 'kill' });
      const [ code ] = await once(app.proc, 'exit');
      assert.strictEqual(code, 1);
      // egg-cluster gives up on a reforked worker that dies while starting (eggjs/egg#4538); we
      // fork the slot again with a growing delay, but a slot that never listens counts as no worker
      assert(app.stdout.match(/\[master\] app_worker#\d:\d+ start, state: none/g).length > 2);
      assert.match(app.stdout, /\[master\] app_worker#\d+:\d+ died before listening, 2 failure\(s\) in a row, refork in 2000ms/);
      assert(app.stderr.includes('nodejs.ClusterWorkerExceptionError: [master] 1 agent and 0 worker(s) alive, exit to avoid unknown state'));
      assert(app.stderr.includes('[master] exit with code:1'));
    });

    it('exits 1 in production when no agent has started for three checks', async function() {
      this.timeout(90000);
      mm.env('prod');
      app = cluster('apps/check-status');
      await app.ready();
      fs.mkdirSync(path.dirname(startedFile), { recursive: true });
      fs.writeFileSync(startedFile, '');
      app.proc.send({ to: 'agent', action: 'kill' });
      const [ code ] = await once(app.proc, 'exit');
      assert.strictEqual(code, 1);
      assert(app.stderr.includes('nodejs.ClusterWorkerExceptionError: [master] 0 agent and 1 worker(s) alive, exit to avoid unknown state'));
      assert(app.stderr.includes('[master] exit with code:1'));
    });
  });
});

// GET over https with the fixture's self-signed certificate
function fetchInsecure(url) {
  return new Promise((resolve, reject) => {
    require('https').get(url, { rejectUnauthorized: false }, res => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', chunk => { body += chunk; });
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}
