'use strict';

const os = require('os');
const path = require('path');

// a scratch directory per run (the driver sets CHAOS_DIR): logs and run files stay out of $HOME
const dir = process.env.CHAOS_DIR || path.join(os.tmpdir(), 'egg-cluster-rs-chaos');

exports.keys = 'chaos';
exports.rundir = path.join(dir, 'run');
exports.logger = {
  dir: path.join(dir, 'logs'),
  // egg's console output of every worker would drown the driver's
  consoleLevel: 'NONE',
  disableConsoleAfterReady: true,
};
exports.customLogger = {};
