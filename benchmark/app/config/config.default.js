'use strict';

const os = require('os');
const path = require('path');

// The benchmark fixture: a plain egg 3 app; its app.js and agent.js put egg's own
// app.messenger / agent.messenger to work (see bench_worker.js).
exports.keys = 'egg-cluster-bench';
exports.logger = {
  dir: path.join(os.tmpdir(), 'egg-cluster-bench-logs'),
  level: 'WARN',
  consoleLevel: 'WARN',
};
exports.customLogger = {};
exports.cluster = { listen: { hostname: '127.0.0.1' } };
