'use strict';

module.exports = app => {
  app.messenger.on('agent-says', data => {
    app.lastAgentBroadcast = data;
  });
};
