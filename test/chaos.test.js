'use strict';

// The short form of the fault suite (test/chaos/run.js has the long one: npm run test:chaos):
// an egg 3 app with an agent and 4 app workers under a steady message load, a few dozen
// SIGKILLs of app workers and the agent, then every check of the long form.
// And the refork backoff of a crash-looping slot in production.

const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { runChaos, printFigures, launch, sleep } = require('./chaos/run');

describe('test/chaos.test.js', function() {
  this.timeout(180000);

  for (const [ egg, port ] of [[ 3, 17531 ], [ 4, 17536 ]]) {
    it(`survives a short kill storm under load (egg ${egg}): workers back, every message once and in order, no leak, no orphan`, async () => {
      const lines = [];
      const figures = await runChaos({
        egg,
        kills: Number(process.env.CHAOS_KILLS || 24),
        workers: 4,
        port,
        agentKillRatio: 0.5,
        killInterval: 1250,
        recoverTimeout: 60000,
        log: line => lines.push(line),
      });
      printFigures(figures, line => console.log(`      ${line}`));
      assert.deepStrictEqual(figures.failures, [], lines.join('\n'));
      assert(figures.killsSurvived >= 10, `${figures.killsSurvived} kills`);
      assert(figures.messagesChecked > 1000, `${figures.messagesChecked} messages checked`);
      assert(figures.roundAnswersChecked > 1000, `${figures.roundAnswersChecked} round answers checked`);
    });
  }

  // The cause of a lost slot seen in the long form: a reforked worker's listen failed with
  // EADDRINUSE because the last listening worker had just died (its round-robin handle was
  // being closed, asynchronously), and egg does not refork a worker that dies before app-start.
  it('a port is free again as soon as its last round-robin worker leaves: listen/close cycles never fail', async () => {
    const { WorkerPool } = require('../lib/pool');
    const pool = new WorkerPool({ schedulingPolicy: 'rr' });
    try {
      const report = new Promise(resolve => pool.on('message', msg => msg.action === 'cycles' && resolve(msg.data)));
      pool.forkApp({ exec: path.join(__dirname, 'chaos', 'listen_cycle_worker.js'), args: [ 17534 ], env: Object.assign({}, process.env, { CYCLES: '200' }) });
      const { n, errors, codes } = await report;
      assert.strictEqual(n, 200);
      assert.strictEqual(errors, 0, `${errors} of ${n} listens right after the previous close failed: ${JSON.stringify(codes)}`);
    } finally {
      pool.close();
    }
  });

  describe('refork backoff (production)', () => {
    let dir;
    let m;

    afterEach(() => {
      if (m) m.kill();
      m = null;
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    // egg-cluster gives up on a slot whose reforked worker dies before app-start; a
    // crash-looping slot should instead be reforked with an exponential, capped backoff, and
    // come back once the cause is gone.
    it('a crash-looping slot is reforked with a growing delay, never abandoned, and recovers', async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'egg-cluster-rs-backoff-'));
      const crashFile = path.join(dir, 'crash');
      m = launch({
        workers: 2,
        port: 17533,
        logFile: path.join(dir, 'master.log'),
        env: { CHAOS_DIR: dir, CHAOS_CRASH_FILE: crashFile, CHAOS_BURST: '1', CHAOS_TICK_MS: '200' },
      });
      await m.wait(x => x.action === 'egg-ready', 60000, 'egg-ready');
      const [ victim, survivor ] = m.apps();
      assert(victim && survivor, `app workers: ${m.apps()}`);

      fs.writeFileSync(crashFile, '');
      process.kill(victim, 'SIGKILL');
      // watch the slot: every app worker pid that appears besides the survivor is a refork
      const forks = []; // [pid, at]
      const seen = new Set([ victim, survivor ]);
      const end = Date.now() + 15000;
      while (Date.now() < end) {
        for (const pid of m.apps()) {
          if (!seen.has(pid)) {
            seen.add(pid);
            forks.push([ pid, Date.now() ]);
          }
        }
        await sleep(20);
      }
      const log = fs.readFileSync(path.join(dir, 'master.log'), 'utf8');
      const starts = log.split('\n').filter(line => /\[master\] app_worker#\d+:\d+ start, state/.test(line)).length;
      assert(forks.length >= 3, `the crash-looping slot was forked ${forks.length} time(s) in the 15 s after the kill ` +
        `(${starts} app_worker start lines in the master log); expected reforks with a backoff, not giving up`);
      const gaps = forks.slice(1).map((f, i) => f[1] - forks[i][1]);
      assert(gaps[gaps.length - 1] > gaps[0], `the delays between reforks do not grow: ${gaps.join(', ')} ms`);

      // the cause is gone: the slot comes back
      fs.unlinkSync(crashFile);
      const back = Date.now() + 45000;
      while (m.apps().length < 2 && Date.now() < back) await sleep(100);
      await sleep(3000);
      assert.strictEqual(m.apps().length, 2, `${m.apps().length} app workers 45 s after the crash cause went away`);
    });

    it('the backoff is configurable and capped: reforkBackoffInitial 200, reforkBackoffMax 800', async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'egg-cluster-rs-backoff-'));
      const crashFile = path.join(dir, 'crash');
      const logFile = path.join(dir, 'master.log');
      m = launch({
        workers: 2,
        port: 17535,
        logFile,
        options: { reforkBackoffInitial: 200, reforkBackoffMax: 800 },
        env: { CHAOS_DIR: dir, CHAOS_CRASH_FILE: crashFile, CHAOS_BURST: '1', CHAOS_TICK_MS: '200' },
      });
      await m.wait(x => x.action === 'egg-ready', 60000, 'egg-ready');
      fs.writeFileSync(crashFile, '');
      process.kill(m.apps()[0], 'SIGKILL');
      const delays = () => Array.from(fs.readFileSync(logFile, 'utf8')
        .matchAll(/died before listening, (\d+) failure\(s\) in a row, refork in (\d+)ms/g), x => Number(x[2]));
      const end = Date.now() + 40000;
      while (delays().length < 5 && Date.now() < end) await sleep(200);
      assert.deepStrictEqual(delays().slice(0, 5), [ 200, 400, 800, 800, 800 ]);
      fs.unlinkSync(crashFile);
      const back = Date.now() + 30000;
      while (m.apps().length < 2 && Date.now() < back) await sleep(100);
      assert.strictEqual(m.apps().length, 2);
    });
  });
});
