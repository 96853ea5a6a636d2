'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const assert = require('assert');
const { fork } = require('child_process');
const { getFilepath, waitFor, alive } = require('./utils');

const MASTER = getFilepath('reload/master.js');
const baseDir = getFilepath('apps/rolling-reload');
const framework = getFilepath('egg');

/**
 * A master with 4 app workers, driven over IPC (test/fixtures/reload/master.js).
 * @param {number} port - the app port
 * @param {Object} [more] - more options, and `env`
 * @return {Object} `{ proc, stdout, reload(options), pids(), close() }`
 */
async function startMaster(port, more = {}) {
  const { env, ...options } = more;
  const proc = fork(MASTER, [ JSON.stringify({ baseDir, framework, workers: 4, port, env: 'prod', ...options }) ], {
    env: { ...process.env, EGG_APP_CLOSE_TIMEOUT: '5000', ...env },
    stdio: [ 'ignore', 'pipe', 'pipe', 'ipc' ],
  });
  const master = { proc, stdout: '', stderr: '', answers: [], exited: false };
  proc.stdout.on('data', chunk => { master.stdout += chunk; });
  proc.stderr.on('data', chunk => { master.stderr += chunk; });
  proc.on('message', msg => master.answers.push(msg));
  proc.on('exit', () => { master.exited = true; });
  let nextId = 0;
  const ask = async (test, options) => {
    const id = ++nextId;
    proc.send({ test, id, options });
    await waitFor(() => master.answers.some(m => m.id === id), 120000);
    return master.answers.find(m => m.id === id);
  };
  master.reload = options => ask('reload', options);
  master.pids = () => ask('pids');
  master.close = async () => {
    if (master.exited) return;
    proc.kill('SIGTERM');
    await waitFor(() => master.exited, 30000);
  };
  await waitFor(() => master.answers.some(m => m.action === 'egg-ready') || master.exited, 60000);
  assert(!master.exited, `the master exited while starting:\n${master.stdout}\n${master.stderr}`);
  return master;
}

function get(port, agent, urlPath = '/') {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent, timeout: 10000 }, res => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(Number(res.headers['x-pid'])) : reject(new Error(`status ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
  });
}

/**
 * Requests from `concurrency` clients until stop(): every response and failure, in order.
 * @param {number} port - the app port
 * @param {Object} options - `concurrency`, `agent` (false: a new connection per request),
 *   `paths` to cycle through
 * @return {Object} `{ stop(), served: [{pid, at}], failures: [{code, at}] }`
 */
function loadUntilStopped(port, { concurrency, agent, paths = [ '/' ] }) {
  const load = { served: [], failures: [], stopped: false };
  let n = 0;
  const client = async () => {
    while (!load.stopped) {
      const urlPath = paths[n++ % paths.length];
      try {
        load.served.push({ pid: await get(port, agent, urlPath), at: Date.now() });
      } catch (err) {
        load.failures.push({ code: err.code || err.message, at: Date.now() });
      }
    }
  };
  const clients = Promise.all(Array.from({ length: concurrency }, client));
  load.stop = async () => {
    load.stopped = true;
    await clients;
  };
  return load;
}

describe('test/rolling_reload.test.js', function() {
  this.timeout(300000);
  let master;
  afterEach(async () => {
    if (master) await master.close();
    master = null;
  });

  async function reloadUnderLoad(port, agent, label) {
    master = await startMaster(port);
    const before = await master.pids();
    assert.strictEqual(before.apps.length, 4);
    const load = loadUntilStopped(port, { concurrency: 8, agent, paths: [ '/', '/slow' ] });
    await waitFor(() => load.served.length >= 50);
    const reloaded = await master.reload();
    const doneAt = Date.now();
    await waitFor(() => load.served.filter(s => s.at > doneAt).length >= 100);
    await load.stop();
    if (agent) agent.destroy();

    assert(!reloaded.error, `reload failed: ${JSON.stringify(reloaded.error)}`);
    const { result } = reloaded;
    const after = await master.pids();
    const slotMs = result.slots.map(s => s.ms);
    console.log('    %s: %d requests, %d failed (%j), reload %dms, per slot %j ms',
      label, load.served.length + load.failures.length, load.failures.length,
      load.failures.map(f => f.code), result.ms, slotMs);
    // every slot got a new pid, the agent kept its own
    assert.strictEqual(result.slots.length, 4);
    assert.deepStrictEqual(result.slots.map(s => s.oldPid).sort(), before.apps.slice().sort());
    assert.deepStrictEqual(result.slots.map(s => s.newPid).sort(), after.apps.slice().sort());
    for (const pid of before.apps) {
      assert(!after.apps.includes(pid), `old worker ${pid} still listed`);
      assert(!alive(pid), `old worker ${pid} still runs`);
    }
    assert.strictEqual(after.agent, before.agent);
    // after the reload only the new workers serve
    const late = load.served.filter(s => s.at > doneAt + 1000);
    assert(late.length > 0);
    for (const s of late) assert(after.apps.includes(s.pid), `request served by ${s.pid}, not a new worker`);
    assert.match(master.stdout, /\[master\] reload: start, 4 app worker\(s\) one at a time/);
    assert.match(master.stdout, /\[master\] reload: app_worker#1:\d+ replaced by app_worker#5:\d+ \(\d+ms\)/);
    assert.match(master.stdout, /\[master\] reload: done, 4 app worker\(s\) replaced in \d+ms/);
    assert.doesNotMatch(master.stdout + master.stderr, /AppWorkerDiedError/);
    return load;
  }

  it('replaces every app worker under load with a new connection per request, and no request fails', async () => {
    const load = await reloadUnderLoad(17921, false, 'new connection per request');
    assert.deepStrictEqual(load.failures, []);
  });

  it('replaces every app worker under load from keep-alive clients', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const load = await reloadUnderLoad(17922, agent, 'keep-alive clients');
    // a keep-alive client may send on a connection in the instant the server closes it as idle
    // (the request is lost on the wire, Node's client does not retry): that race is the only
    // failure there can be, one per connection at most
    assert(load.failures.every(f => f.code === 'ECONNRESET'), JSON.stringify(load.failures));
    assert(load.failures.length <= 8 * 4, `${load.failures.length} failures`);
  });

  // the other ways an app port is shared: one socket for all (`none`), the master accepting and
  // handing each client to its worker (sticky), a socket per worker (`reuseport`)
  for (const [ label, options, port ] of [
    [ 'schedulingPolicy none', { schedulingPolicy: 'none' }, 17926 ],
    [ 'sticky', { sticky: true }, 17927 ],
    [ 'schedulingPolicy reuseport', { schedulingPolicy: 'reuseport' }, 17928 ],
    // the same app under egg 4 (egg@4 with this repository as its cluster package)
    [ 'egg 4', { framework: getFilepath('egg4') }, 17929 ],
  ]) {
    it(`replaces every app worker under load with ${label}`, async () => {
      master = await startMaster(port, options);
      const before = await master.pids();
      const load = loadUntilStopped(port, { concurrency: 8, agent: false, paths: [ '/', '/slow' ] });
      await waitFor(() => load.served.length >= 50);
      const reloaded = await master.reload();
      const doneAt = Date.now();
      await waitFor(() => load.served.filter(s => s.at > doneAt).length >= 50);
      await load.stop();
      assert(!reloaded.error, `reload failed: ${JSON.stringify(reloaded.error)}`);
      console.log('    %s: %d requests, %d failed (%j), reload %dms', label,
        load.served.length + load.failures.length, load.failures.length,
        load.failures.map(f => f.code), reloaded.result.ms);
      const after = await master.pids();
      assert.strictEqual(reloaded.result.slots.length, 4);
      for (const pid of before.apps) assert(!after.apps.includes(pid));
      for (const s of load.served.filter(r => r.at > doneAt + 1000)) assert(after.apps.includes(s.pid));
      if (options.schedulingPolicy === 'reuseport') {
        // each worker has its own SO_REUSEPORT socket: connections still in the old socket's
        // accept queue when it closes are reset by the kernel (unless net.ipv4.tcp_migrate_req)
        assert(load.failures.every(f => f.code === 'ECONNRESET'), JSON.stringify(load.failures));
      } else {
        assert.deepStrictEqual(load.failures, []);
      }
    });
  }

  it('aborts when a successor throws at start, and the old workers keep serving', async () => {
    const flag = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'egg-cluster-rs-reload-')), 'fail');
    master = await startMaster(17923, { env: { RELOAD_FAIL_FLAG: flag } });
    const before = await master.pids();
    fs.writeFileSync(flag, '');
    const load = loadUntilStopped(17923, { concurrency: 4, agent: false });
    const reloaded = await master.reload();
    await load.stop();
    assert(reloaded.error, 'the reload should have failed');
    assert.strictEqual(reloaded.error.code, 'ERR_RELOAD_ABORTED');
    assert.match(reloaded.error.message, /the successor app_worker#5:\d+ of app_worker#1:\d+ exited \(code: 1, signal: null\) before it started; app_worker#1:\d+ keeps serving/);
    assert.match(master.stdout + master.stderr, /\[master\] reload: aborted, the successor app_worker#5/);
    assert.deepStrictEqual(load.failures, []);
    const after = await master.pids();
    assert.deepStrictEqual(after.apps, before.apps);
    for (const pid of before.apps) assert(alive(pid));
    // fixed, the next reload goes through
    fs.unlinkSync(flag);
    const again = await master.reload();
    assert(!again.error, JSON.stringify(again.error));
    assert.strictEqual(again.result.slots.length, 4);
  });

  it('runs one reload at a time, answers a second request with that fact, and reloads on SIGUSR2', async () => {
    master = await startMaster(17924);
    const first = master.reload();
    const second = master.reload();
    const answers = await Promise.all([ first, second ]);
    const failed = answers.filter(a => a.error);
    assert.strictEqual(failed.length, 1, JSON.stringify(answers));
    assert.strictEqual(failed[0].error.code, 'ERR_RELOAD_IN_PROGRESS');
    assert.match(failed[0].error.message, /a reload is already running/);

    const before = await master.pids();
    master.proc.kill('SIGUSR2');
    await waitFor(() => (master.stdout.match(/\[master\] reload: done/g) || []).length === 2, 120000);
    assert.match(master.stdout, /\[master\] reload: requested by SIGUSR2/);
    const after = await master.pids();
    for (const pid of before.apps) assert(!after.apps.includes(pid));
  });

  it('replaces the agent first with { agent: true }, with egg\'s agent lifecycle', async () => {
    master = await startMaster(17925);
    const before = await master.pids();
    const reloaded = await master.reload({ agent: true });
    assert(!reloaded.error, JSON.stringify(reloaded.error));
    const after = await master.pids();
    assert.notStrictEqual(after.agent, before.agent);
    assert.strictEqual(reloaded.result.agent.oldPid, before.agent);
    assert.strictEqual(reloaded.result.agent.newPid, after.agent);
    assert.strictEqual(reloaded.result.slots.length, 4);
    assert.match(master.stdout, /\[master\] reload: agent_worker#1:\d+ stopped \(code: \d+, signal: null\), new agent_worker starting/);
    assert.match(master.stdout, /\[master\] agent_worker#2:\d+ started/);
    assert.match(master.stdout, /\[master\] reload: agent_worker#1:\d+ replaced by agent_worker#2:\d+/);
    assert.doesNotMatch(master.stdout + master.stderr, /AgentWorkerDiedError/);
    assert(!alive(before.agent));
  });
});
