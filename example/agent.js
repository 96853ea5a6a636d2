'use strict';

module.exports = agent => {
  // answers one app worker by pid
  agent.messenger.on('agent-time', ({ pid }) => {
    agent.messenger.sendTo(pid, `agent-time:${pid}`, { agentPid: process.pid, now: new Date().toISOString() });
  });
  agent.messenger.on('please-broadcast', data => {
    agent.messenger.sendToApp('agent-says', data);
  });
};
