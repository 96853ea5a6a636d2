'use strict';

const assert = require('assert');
const mm = require('egg-mock');
const { ReforkPolicy } = require('../lib/refork_policy');

// cfork's budget, which egg-cluster inherits: at most 59 reforks in any 60 seconds; and our
// backoff for a slot that keeps dying before it listens
describe('test/refork_limit.test.js', () => {
  afterEach(mm.restore);

  it('refuses the 60th refork within a minute and says so', () => {
    const errors = [];
    mm(console, 'error', (...args) => errors.push(args));
    const policy = new ReforkPolicy({ isProduction: true });
    for (let i = 1; i < 60; i++) {
      assert.strictEqual(policy.allow(), true, `refork #${i}`);
    }
    assert.strictEqual(policy.allow(), false);
    assert.strictEqual(errors.length, 1);
    assert.match(errors[0][0], /\[cfork:master:%s\] worker died too fast \(total %d disconnect, %d unexpected exit\)/);
  });

  it('allows reforks again once the oldest of the last 60 is a minute old', () => {
    mm(console, 'error', () => {});
    let now = 1000000;
    const policy = new ReforkPolicy({ isProduction: true, now: () => now });
    for (let i = 0; i < 59; i++) {
      assert.strictEqual(policy.allow(), true);
      now++;
    }
    now += 61000;
    assert.strictEqual(policy.allow(), true);
  });

  it('never reforks outside production', () => {
    assert.strictEqual(new ReforkPolicy({ isProduction: false }).allow(), false);
  });

  it('backs a crash-looping slot off 1 s, 2 s, 4 s, … up to 30 s, and forgets once it listens', () => {
    const policy = new ReforkPolicy({ isProduction: true });
    const slot = { CFORK_WORKER_INDEX: '0' };
    const delays = [];
    for (let i = 0; i < 7; i++) delays.push(policy.slotFailed(slot).delay);
    assert.deepStrictEqual(delays, [ 1000, 2000, 4000, 8000, 16000, 30000, 30000 ]);
    assert.deepStrictEqual(policy.slotFailed({ CFORK_WORKER_INDEX: '1' }), { failures: 1, delay: 1000 });
    policy.slotStarted(slot);
    assert.deepStrictEqual(policy.slotFailed(slot), { failures: 1, delay: 1000 });
  });

  it('takes the backoff from reforkBackoffInitial / reforkBackoffMax', () => {
    const policy = new ReforkPolicy({ isProduction: true, backoffInitial: 100, backoffMax: 250 });
    assert.deepStrictEqual([ 1, 2, 3, 4 ].map(n => policy.backoffDelay(n)), [ 100, 200, 250, 250 ]);
  });
});
