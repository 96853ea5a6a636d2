'use strict';

/**
 * Options of `startCluster()`, with egg-cluster 2.x defaults, validation and error messages.
 * The parsed object is what the master logs, sends to the agent and app workers as their
 * argv JSON, and sends with `egg-ready`.
 */

const fs = require('fs');
const path = require('path');
const assert = require('assert');
const { getFrameworkPath, assertFramework } = require('./framework');
const { defaultWorkerCount } = require('./worker_count');
const { masterDialect } = require('./dialect');

const DEBUG_ARGV = [ '--debug', '--inspect' ];

// what worker_threads mode cannot do: the master hands sticky connections to processes
class StartModeOptionError extends Error {
  constructor(message) {
    super(message);
    this.name = 'StartModeOptionError';
  }
}

/**
 * @param {Object} input - startCluster's options
 * @param {Object} [internal] - `entry: 'esm'` from the ESM entry (lib/dialect.js);
 *   `checkFramework: false`: the caller checks the framework itself
 *   (the Master has its agent do it); `onDefaultWorkers({ count, rule })`: told how the worker
 *   count was chosen when the options give none
 * @return {Object} the parsed options
 */
function parseOptions(input, internal = {}) {
  input = input || {};
  const options = {
    framework: '',
    baseDir: process.cwd(),
    port: input.https ? 8443 : null,
    reusePort: false,
    workers: null,
    plugins: null,
    https: false,
    startMode: 'process',
    ports: [],
    env: null,
  };
  // a value of null or undefined keeps the default
  for (const key of Object.keys(input)) {
    if (input[key] !== null && input[key] !== undefined) options[key] = input[key];
  }

  // 'worker_threads' runs the agent and app workers as threads (lib/master/threads.js); any other
  // value is process mode, as egg-cluster's
  if (options.startMode === 'worker_threads') {
    if (options.sticky) {
      throw new StartModeOptionError('[master] sticky mode is not available with startMode "worker_threads" ' +
        '(each app thread listens on its own port, see `ports`); remove `sticky` or use startMode "process"');
    }
    if (!Array.isArray(options.ports)) {
      throw new StartModeOptionError(`[master] options.ports should be an array of ports, got ${JSON.stringify(options.ports)}`);
    }
  }

  if (!options.workers) {
    // egg-cluster's os.cpus().length, bounded by a container's CPU quota (lib/worker_count.js)
    const chosen = defaultWorkerCount({ root: process.env.EGG_CLUSTER_RS_TEST_CGROUP_ROOT });
    options.workers = chosen.count;
    if (internal.onDefaultWorkers) internal.onDefaultWorkers(chosen);
  }
  if (!options.env && process.env.EGG_SERVER_ENV) options.env = process.env.EGG_SERVER_ENV;

  const pkgPath = path.join(options.baseDir, 'package.json');
  assert(fs.existsSync(pkgPath), `${pkgPath} should exist`);

  // `customEgg` is the old name of `framework`, still honoured when startCluster is called directly
  options.framework = getFrameworkPath({
    baseDir: options.baseDir,
    framework: options.framework || options.customEgg,
  });

  // egg-cluster requires the framework here; we check it in a child process (lib/framework.js)
  if (internal.checkFramework !== false) assertFramework(options.framework);

  if (options.https) {
    // egg-cluster's or @eggjs/cluster's words (lib/dialect.js), now that the framework is known
    const dialect = masterDialect(options, internal.entry);
    if (typeof options.https === 'boolean') {
      // the 1.x shape: `https: true` with top-level key and cert
      console.warn(`${dialect.deprecationPrefix} [master] Please use \`https: { key, cert, ca }\` instead of \`https: true\``);
      options.https = { key: options.key, cert: options.cert };
    }
    dialect.checkHttps(options.https);
  }

  options.port = parseInt(options.port, 10) || undefined;
  options.workers = parseInt(options.workers, 10);
  if (options.require) options.require = [].concat(options.require);

  // deprecation warnings go to stderr, which egg-scripts reads as a failed start
  if (process.env.NODE_ENV === 'production') process.env.NO_DEPRECATION = '*';

  if (process.execArgv.some(arg => DEBUG_ARGV.some(flag => arg.includes(flag)))) {
    options.isDebug = true;
  }

  return options;
}

module.exports = parseOptions;
