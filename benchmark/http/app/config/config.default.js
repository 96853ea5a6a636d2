'use strict';

const os = require('os');
const path = require('path');

// logs and run files outside the repository
const dir = path.join(os.tmpdir(), 'egg-cluster-rs-bench-http');

exports.keys = 'bench-http';
exports.logger = { dir: path.join(dir, 'logs'), level: 'WARN', consoleLevel: 'WARN' };
exports.rundir = path.join(dir, 'run');
