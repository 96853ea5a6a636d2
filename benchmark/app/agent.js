'use strict';

module.exports = agent => require('./bench_worker')(agent.messenger, 'agent');
