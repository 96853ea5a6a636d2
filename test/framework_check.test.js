'use strict';

const assert = require('assert');
const path = require('path');
const { spawnSync } = require('child_process');
const utils = require('./utils');

// `new Master()` with a bad framework throws synchronously, as egg-cluster's does, although our
// master has its agent load the framework: the agent must be gone and the master must exit by
// itself, without logging a start banner or an agent failure
function construct(framework) {
  const script = `
    const fs = require('fs');
    const Master = require(${JSON.stringify(path.join(__dirname, '../lib/master'))});
    // a thread may end between the listing and the read
    const children = () => fs.readdirSync('/proc/self/task').flatMap(t => {
      try { return fs.readFileSync('/proc/self/task/' + t + '/children', 'utf8').trim().split(/\\s+/).filter(Boolean); } catch { return []; }
    });
    let outcome;
    try {
      new Master({ baseDir: ${JSON.stringify(utils.getFilepath('apps/options'))}, framework: ${JSON.stringify(framework)}, workers: 1 });
      outcome = { threw: false };
    } catch (err) {
      outcome = { threw: true, name: err.name, message: err.message, code: err.code };
    }
    // the killed agent and the orphan watchdog take a moment to go: count the live ones
    // (not zombies) for up to 3s
    const live = () => children().filter(pid => {
      try { return !/^\\S+ \\(.*\\) Z/.test(fs.readFileSync('/proc/' + pid + '/stat', 'utf8')); } catch { return false; }
    });
    const comm = pids => pids.map(pid => { try { return fs.readFileSync('/proc/' + pid + '/cmdline', 'utf8').slice(0, 60); } catch { return '?'; } });
    const deadline = Date.now() + 3000;
    (function check() {
      const left = live();
      if (left.length && Date.now() < deadline) return setTimeout(check, 50);
      console.log('OUTCOME ' + JSON.stringify({ ...outcome, live: comm(left) }));
    })();`;
  const res = spawnSync(process.execPath, [ '-e', script ], { encoding: 'utf8', timeout: 30000 });
  const line = res.stdout.split('\n').find(l => l.startsWith('OUTCOME '));
  assert(line, `no outcome; status ${res.status}, signal ${res.signal}\n${res.stdout}\n${res.stderr}`);
  return { ...JSON.parse(line.slice(8)), status: res.status, stdout: res.stdout, stderr: res.stderr };
}

describe('test/framework_check.test.js', () => {
  it('throws "should define Agent" for a framework without Agent, kills the agent, exits', () => {
    const framework = utils.getFilepath('framework-without-agent');
    const r = construct(framework);
    assert.deepStrictEqual({ threw: r.threw, name: r.name, message: r.message, live: r.live },
      { threw: true, name: 'AssertionError', message: `should define Agent in ${framework}`, live: [] });
    assert.strictEqual(r.status, 0, 'the master exits by itself: nothing keeps its loop alive');
    assert(!/egg start|agent_worker/.test(r.stdout), r.stdout);
    assert(!/TypeError|Agent is not a constructor/.test(r.stderr), r.stderr);
  });

  it('throws the framework\'s own load error', () => {
    const framework = utils.getFilepath('framework-throws');
    const r = construct(framework);
    assert.deepStrictEqual({ threw: r.threw, name: r.name, message: r.message, code: r.code, live: r.live },
      { threw: true, name: 'RangeError', message: 'framework-throws cannot load', code: 'ERR_FRAMEWORK_BROKEN', live: [] });
    assert.strictEqual(r.status, 0);
  });

  it('a framework that prints when loaded is still checked once, its output shown once', async () => {
    const app = utils.cluster('apps/app-server', { framework: utils.getFilepath('framework-noisy'), workers: 1 });
    await app.ready();
    try {
      const count = (app.stdout.match(/framework-noisy loaded/g) || []).length;
      // egg-mock's start-cluster script loads it in the master process (that is how it finds
      // startCluster), then the agent and the app worker: no probe process loaded it again
      assert.strictEqual(count, 3, app.stdout);
      app.expect('stdout', /framework-noisy started on/);
    } finally {
      await app.close();
    }
  });
});
