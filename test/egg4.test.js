'use strict';

// egg 4 (egg@4 from npm, as the devDependency `egg4`) through @eggjs/mock 6's mm.cluster, with
// this repository as its cluster manager (test/fixtures/egg4: egg 4's exports, ours for the
// cluster, as an `overrides` line installs it). The master picks egg 4's dialect from the
// framework (lib/dialect.js).

const fs = require('fs');
const path = require('path');
const assert = require('assert');
const { types } = require('util');
const { mm } = require('@eggjs/mock');
const { getFilepath, waitFor, alive, getJSON } = require('./utils');

const FRAMEWORK = getFilepath('egg4');
const baseDir = getFilepath('apps-egg4/messenger');

function cluster(options) {
  return mm.cluster({ baseDir, framework: FRAMEWORK, cache: false, coverage: false, workers: 2, ...options });
}

const get = getJSON;

// a GET answered by the worker `pid` (round-robin: asks again until that worker answers)
async function getFrom(port, pid, urlPath) {
  for (let i = 0; i < 40; i++) {
    const res = await get(port, urlPath);
    if (res.body.pid === pid) return res;
  }
  throw new Error(`worker ${pid} never answered ${urlPath}`);
}

async function workerPids(port, count) {
  const pids = new Set();
  for (let i = 0; i < 40 && pids.size < count; i++) pids.add((await get(port, '/')).body.pid);
  assert.strictEqual(pids.size, count);
  return Array.from(pids);
}

async function received(port, pid) {
  return (await getFrom(port, pid, '/received')).body.received;
}

describe('test/egg4.test.js', function() {
  this.timeout(120000);

  describe('an egg 4 app with 2 app workers', () => {
    const port = 17601;
    let app;
    let pids;
    before(async () => {
      app = cluster({ port });
      await app.ready();
      pids = await workerPids(port, 2);
    });
    after(() => app.close());

    it('exports startCluster as an async function through egg 4, as @eggjs/mock 6 requires', () => {
      const framework = require(FRAMEWORK);
      assert(types.isAsyncFunction(framework.startCluster));
      assert.strictEqual(framework.startCluster, require('..').startCluster);
      assert.strictEqual(typeof framework.ClusterAgentWorkerError, 'function');
      assert.strictEqual(typeof framework.ClusterWorkerExceptionError, 'function');
    });

    it('starts with egg 4\'s lines and runs its workers from dist/commonjs/, where eggctl stop looks', async () => {
      assert.match(app.stdout, /\[master\] =================== egg4-framework start 🥚🥚🥚🥚 =====================/);
      assert.match(app.stdout, /\[master\] egg4-framework started on http:\/\/127\.0\.0\.1:17601 \(\d+ms\)/);
      assert.doesNotMatch(app.stdout, /listening on \{/);
      const { body } = await get(port, '/');
      assert.match(body.script, /[\\/]dist[\\/]commonjs[\\/]app_worker\.js$/);
      assert.match(body.script, /@eggjs[\\/]cluster[\\/]dist|[\\/]dist[\\/]commonjs[\\/]/);
      assert.strictEqual(body.port, port);
    });

    it('tells each app worker the agent\'s pid once it has started (egg 4\'s egg-pids to that worker)', async () => {
      const agentPid = Number(/\[egg4 agent\] egg-ready, pid (\d+)/.exec(app.stdout)[1]);
      for (const pid of pids) {
        const { body } = await getFrom(port, pid, '/received');
        assert.deepStrictEqual(body.agentPids.map(Number), [ agentPid ]);
      }
    });

    it('sendToAgent from an app worker, and the agent answers that worker alone with sendTo', async () => {
      const [ asker, other ] = pids;
      await getFrom(port, asker, `/ping?from=${asker}`);
      let got = [];
      for (let i = 0; i < 50 && !got.some(m => m.action === 'pong'); i++) got = await received(port, asker);
      assert(got.some(m => m.action === 'pong'), JSON.stringify(got));
      assert(!(await received(port, other)).some(m => m.action === 'pong'));
    });

    it('sendToApp, sendRandom and broadcast from the agent', async () => {
      await get(port, '/fan-out?id=7');
      const seen = async () => Promise.all(pids.map(pid => received(port, pid)));
      let all;
      for (let i = 0; i < 50; i++) {
        all = await seen();
        const done = all.every(r => r.some(m => m.action === 'to-apps' && m.data.id === '7') && r.some(m => m.action === 'to-all' && m.data.id === '7'));
        if (done && all.flat().some(m => m.action === 'to-random')) break;
      }
      for (const r of all) {
        assert.strictEqual(r.filter(m => m.action === 'to-apps' && m.data.id === '7').length, 1);
        assert.strictEqual(r.filter(m => m.action === 'to-all' && m.data.id === '7').length, 1);
      }
      assert.strictEqual(all.flat().filter(m => m.action === 'to-random' && m.data.id === '7').length, 1);
    });

    it('sendTo between app workers, addressed with egg 4\'s receiverWorkerId', async () => {
      const [ from, to ] = pids;
      await getFrom(port, from, `/to-app?pid=${to}&from=${from}`);
      let got = [];
      for (let i = 0; i < 50 && !got.some(m => m.action === 'app-to-app'); i++) got = await received(port, to);
      assert.deepStrictEqual(got.filter(m => m.action === 'app-to-app').map(m => m.data), [{ from }]);
      assert(!(await received(port, from)).some(m => m.action === 'app-to-app'));
    });
  });

  it('reforks an app worker that exits in production, with cfork 2\'s lines', async () => {
    const port = 17602;
    const app = cluster({ port, env: 'prod' });
    try {
      await app.ready();
      const [ victim ] = await workerPids(port, 2);
      await getFrom(port, victim, '/exit');
      await waitFor(() => /app_worker#3:\d+ started at 17602/.test(app.stdout), 30000);
      assert.match(app.stdout + app.stderr, /\[cfork:master:\d+\] new worker:\d+ fork \(state: none, reforkCount: 1\)/);
      assert.match(app.stdout + app.stderr, new RegExp(`worker:${victim} exit \\(code: 1, exitedAfterDisconnect: false, state: dead, isDead: true, isExpected: \\w+, worker.disableRefork: false, isSlave: false, slaveIndex: \\)`));
      // egg 4 prints the worker's real exit code
      assert.match(app.stdout + app.stderr, new RegExp(`app_worker#\\d:${victim} died \\(code: 1, signal: null`));
      assert.strictEqual((await workerPids(port, 2)).includes(victim), false);
    } finally {
      await app.close();
    }
  });

  it('closes: the master exits 0 and no worker is left', async () => {
    const port = 17603;
    const app = cluster({ port });
    await app.ready();
    const pids = await workerPids(port, 2);
    const agentPid = Number(/\[egg4 agent\] egg-ready, pid (\d+)/.exec(app.stdout)[1]);
    const exited = new Promise(resolve => app.proc.once('exit', resolve));
    await app.close();
    assert.strictEqual(await exited, 0);
    for (const pid of [ ...pids, agentPid ]) await waitFor(() => !alive(pid), 10000);
    assert.match(app.stdout, /\[master\] exit with code:0/);
  });

  it('serves https with the key and cert from the options', async () => {
    const port = 17604;
    const app = cluster({
      port,
      workers: 1,
      https: { key: getFilepath('apps/https-server/server.key'), cert: getFilepath('apps/https-server/server.crt') },
    });
    try {
      await app.ready();
      const { status, body } = await get(port, '/', { secure: true });
      assert.strictEqual(status, 200);
      assert(body.pid > 0);
      assert.match(app.stdout, /started on https:\/\/127\.0\.0\.1:17604/);
    } finally {
      await app.close();
    }
  });

  it('sticky mode: one client keeps its worker', async () => {
    const port = 17605;
    const app = cluster({ port, sticky: true });
    try {
      await app.ready();
      assert.match(app.stdout, /with STICKY MODE!/);
      const seen = new Set();
      for (let i = 0; i < 10; i++) seen.add((await get(port, '/')).body.pid);
      assert.strictEqual(seen.size, 1);
    } finally {
      await app.close();
    }
  });

  it('a `require` entry is loaded from baseDir in every worker before the app', async () => {
    const port = 17606;
    const marker = path.join(fs.mkdtempSync(path.join(require('os').tmpdir(), 'egg-cluster-rs-egg4-')), 'required');
    process.env.EGG4_PRELOAD_MARKER = marker;
    const app = cluster({ port, workers: 1, require: [ './preload.js' ] });
    try {
      await app.ready();
      const lines = fs.readFileSync(marker, 'utf8').split('\n').filter(Boolean);
      // the agent and the app worker, each before the framework (preload.js checks)
      assert.deepStrictEqual(lines.map(line => line.replace(/^.*[\\/]/, '')).sort(), [ 'agent_worker.js before egg', 'app_worker.js before egg' ]);
    } finally {
      delete process.env.EGG4_PRELOAD_MARKER;
      await app.close();
    }
  }).timeout(120000);
});
