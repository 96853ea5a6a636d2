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

/**
 * One GET of 127.0.0.1:port on a new connection, its body parsed as JSON.
 * @param {number} port - the port
 * @param {string} urlPath - the path
 * @param {Object} [opts] - `secure: true` for https (any certificate)
 * @return {Promise<{status, body}>} -
 */
exports.getJSON = (port, urlPath, { secure = false } = {}) => {
  const client = secure ? require('https') : require('http');
  return new Promise((resolve, reject) => {
    const req = client.get({ host: '127.0.0.1', port, path: urlPath, agent: false, rejectUnauthorized: false, timeout: 10000 }, res => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', chunk => { text += chunk; });
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode, body: JSON.parse(text) });
        } catch (err) {
          reject(new Error(`GET ${urlPath}: ${res.statusCode} ${text.slice(0, 200)}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
};
