'use strict';

const assert = require('assert');
const mm = require('egg-mock');
const Master = require('../lib/master');

// cfork's budget, which egg-cluster inherits: at most 59 reforks in any 60 seconds
describe('test/refork_limit.test.js', () => {
  afterEach(mm.restore);

  function masterState(isProduction) {
    return { isProduction, reforkTimes: [], disconnectCount: 0, unexpectedCount: 0 };
  }

  it('refuses the 60th refork within a minute and says so', () => {
    const errors = [];
    mm(console, 'error', (...args) => errors.push(args));
    const state = masterState(true);
    for (let i = 1; i < 60; i++) {
      assert.strictEqual(Master.prototype.allowRefork.call(state), true, `refork #${i}`);
    }
    assert.strictEqual(Master.prototype.allowRefork.call(state), false);
    assert.strictEqual(errors.length, 1);
    assert.match(errors[0][0], /\[cfork:master:%s\] worker died too fast \(total %d disconnect, %d unexpected exit\)/);
  });

  it('allows reforks again once the oldest of the last 60 is a minute old', () => {
    mm(console, 'error', () => {});
    const state = masterState(true);
    const now = Date.now();
    state.reforkTimes = Array.from({ length: 59 }, (_, i) => now - 61000 + i);
    assert.strictEqual(Master.prototype.allowRefork.call(state), true);
  });

  it('never reforks outside production', () => {
    assert.strictEqual(Master.prototype.allowRefork.call(masterState(false)), false);
  });
});
