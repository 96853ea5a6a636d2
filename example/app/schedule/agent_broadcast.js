'use strict';

// one worker at a time runs it (type: worker): it asks the agent to broadcast
module.exports = {
  schedule: {
    interval: '5s',
    type: 'worker',
  },
  async task(ctx) {
    ctx.app.messenger.sendToAgent('please-broadcast', { at: Date.now() });
  },
};
