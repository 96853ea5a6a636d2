'use strict';

// Messages for the master wait for JavaScript within a byte budget (64 MiB), not only a count:
// a worker flooding `to: master` with 2 MiB messages while the master's JavaScript is busy makes
// the core stop reading that worker instead of holding everything it sent.
const assert = require('assert');
const path = require('path');
const { fork } = require('child_process');

const MASTER = path.join(__dirname, 'fixtures/pool/flood_master.js');

describe('test/event_budget.test.js', () => {
  it('a flood of large to:master messages is held back while JavaScript is busy, and all arrive in order', async () => {
    const n = 200;
    const size = 2 << 20; // 400 MiB in all
    const child = fork(MASTER, [ n, size, 4000 ], { stdio: [ 'ignore', 'inherit', 'inherit', 'ipc' ] });
    const report = await new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', code => reject(new Error(`flood master exited with ${code} before reporting`)));
    });
    assert.strictEqual(report.received, n);
    assert.strictEqual(report.inOrder, true);
    // while JavaScript was busy the core held at most the 64 MiB budget (plus a read buffer);
    // without the budget it held all 400 MiB the worker sent
    const heldMiB = (report.heldKiB - report.baselineKiB) / 1024;
    assert(heldMiB < 100, `the master held ${heldMiB.toFixed(0)} MiB while its JavaScript was busy`);
  });
});
