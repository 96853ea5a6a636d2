'use strict';

const fs = require('fs');
const path = require('path');
const mm = require('egg-mock');

const FIXTURES = path.join(__dirname, 'fixtures');
const FRAMEWORK = path.join(FIXTURES, 'egg');

exports.getFilepath = name => path.join(FIXTURES, name);

/**
 * Start `test/fixtures/<name>` with egg-mock's cluster mode and our startCluster.
 * @param {String} name - e.g. 'apps/master-worker-started'
 * @param {Object} [options] - more startCluster / mm.cluster options
 * @return {ClusterApplication} a coffee instance: expect / end / ready / close
 */
exports.cluster = (name, options) => mm.cluster(Object.assign({
  baseDir: name,
  framework: FRAMEWORK,
  cache: false,
  coverage: false,
  opt: { execArgv: [] },
}, options));

exports.sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

// true while a process with this pid runs (a zombie waiting for init to reap it is dead)
exports.alive = pid => {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
};

// resolves once check() is true, polling every 100ms
exports.waitFor = async (check, timeout = 30000) => {
  const end = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeout}ms`);
    await exports.sleep(100);
  }
};
