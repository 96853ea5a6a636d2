'use strict';

// every app worker counts ticks (type: all runs it in each worker)
module.exports = {
  schedule: {
    interval: '2s',
    type: 'all',
  },
  async task(ctx) {
    ctx.app.ticks = (ctx.app.ticks || 0) + 1;
  },
};
