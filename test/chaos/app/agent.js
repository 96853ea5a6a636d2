'use strict';

const { Load } = require('./lib/load');

module.exports = agent => {
  agent.chaos = new Load(agent, 'agent');
  agent.chaos.install();
};
