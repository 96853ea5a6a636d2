'use strict';

// Delivery guarantee 2 (DESIGN.md) under load: everything the master sends in one tick is in all
// its recipients' queues before the core relays anything a worker sends after reading part of it.
// Each round the master sends round k to the app workers and to the agent in one tick; every
// worker answers the other side at once, and every answer must find its recipient already past
// round k. Noise bounces between the workers all the while, so the relay is never idle.

const assert = require('assert');
const path = require('path');
const { fork } = require('child_process');

const MASTER = path.join(__dirname, 'fixtures/tick/master.js');

function run(config, env = {}) {
  return new Promise((resolve, reject) => {
    const child = fork(MASTER, [ JSON.stringify(config) ], {
      stdio: [ 'ignore', 'inherit', 'inherit', 'ipc' ],
      env: { ...process.env, ...env },
    });
    let result = null;
    const errors = [];
    child.on('message', msg => {
      if (msg.action === 'result') result = msg.data;
      if (msg.action === 'error') errors.push(msg.data);
    });
    child.on('exit', code => {
      if (result) return resolve({ reports: result, errors });
      reject(new Error(`the master exited with ${code}: ${JSON.stringify(errors)}`));
    });
  });
}

function check({ reports, errors }, { apps, rounds }, label) {
  const violations = reports.reduce((n, r) => n + r.violations, 0);
  const answers = reports.reduce((n, r) => n + r.answers, 0);
  const noise = reports.reduce((n, r) => n + r.noise, 0);
  console.log('      %s: %d rounds, %d answers checked, %d noise messages relayed meanwhile, %d violation(s)',
    label, rounds, answers, noise, violations);
  assert.deepStrictEqual(errors, []);
  for (const r of reports) {
    assert.strictEqual(r.violations, 0, `${r.kind} ${r.pid}: an answer overtook the round that caused it: ${JSON.stringify(r.firstViolation)}`);
    assert.strictEqual(r.outOfOrder, 0, `${r.kind} ${r.pid}: the master's rounds arrived out of order`);
    assert.strictEqual(r.lastRound, rounds - 1, `${r.kind} ${r.pid} saw every round`);
    assert.strictEqual(r.answers, r.kind === 'agent' ? rounds * apps : rounds, `${r.kind} ${r.pid} got every answer`);
  }
  assert(noise > 0, 'the workers kept the relay busy');
}

describe('test/tick_unit.test.js', () => {
  it('no answer overtakes the master unit that caused it: 10,000 rounds, 2 apps, busy relay', async () => {
    const config = { apps: 2, rounds: 10000, noise: 32 };
    check(await run(config), config, 'no pause');
  });

  it('no answer overtakes the master unit that caused it with the core pausing inside every unit: 1,000 rounds', async () => {
    const config = { apps: 2, rounds: 1000, noise: 32 };
    check(await run(config, { EGG_CLUSTER_RS_TEST_TICK_PAUSE_US: '300' }), config, 'pause 300 µs');
  });
});
