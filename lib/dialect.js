'use strict';

/**
 * egg 3 or egg 4: the one place that knows what differs between the two cluster managers we
 * stand in for, egg-cluster 2.x (egg 3) and @eggjs/cluster 3.x (egg 4). Everything else asks a
 * dialect object and never tests the generation itself.
 *
 * The generation is decided at run time, never by a user's flag:
 * - the master: loaded through the ESM entry (`import`) ⇒ egg 4; otherwise the framework tells:
 *   egg itself, or a framework built on it, of major version 4 or later ⇒ egg 4 (frameworkGeneration);
 * - a worker: started from `dist/{esm,commonjs}/*_worker.js` ⇒ egg 4, from `lib/` ⇒ egg 3 (the
 *   master forks the scripts of its own dialect, workerScript).
 */

const fs = require('fs');
const path = require('path');
const assert = require('assert');
const { ClusterAgentWorkerError } = require('./errors');

const ROOT = path.join(__dirname, '..');

function readJSON(file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

// the major version a semver range or version names: "^4.0.10" → 4, "npm:egg@~4.1" → 4
function majorOf(range) {
  if (typeof range !== 'string') return null;
  const match = /(?:^|[@\s^~=>v])(\d+)(?:\.|$|\s|\.x)/.exec(range.replace(/^npm:[^@]+@/, ''));
  return match ? Number(match[1]) : null;
}

/**
 * Which egg a framework directory is: 4 when it is egg ≥ 4, depends on egg ≥ 4 or on
 * @eggjs/cluster, or resolves an egg ≥ 4; otherwise 3.
 * @param {string} frameworkDir - absolute path of the framework package
 * @return {number} 3 or 4
 */
function frameworkGeneration(frameworkDir) {
  const pkg = readJSON(path.join(frameworkDir, 'package.json'));
  if (!pkg) return 3;
  if (pkg.name === 'egg') return (majorOf(pkg.version) || 3) >= 4 ? 4 : 3;
  const deps = Object.assign({}, pkg.peerDependencies, pkg.dependencies);
  if (deps['@eggjs/cluster']) return 4;
  if (deps.egg) return (majorOf(deps.egg) || 3) >= 4 ? 4 : 3;
  try {
    const eggPkg = readJSON(require.resolve('egg/package.json', { paths: [ frameworkDir ] }));
    return eggPkg && (majorOf(eggPkg.version) || 3) >= 4 ? 4 : 3;
  } catch {
    return 3;
  }
}

// egg-cluster: key, cert (and ca when given) must be existing files
function httpsFilesOnly(https) {
  const { key, cert, ca } = https;
  assert(key && fs.existsSync(key), 'options.https.key should exists');
  assert(cert && fs.existsSync(cert), 'options.https.cert should exists');
  assert(!ca || fs.existsSync(ca), 'options.https.ca should exists');
}

// @eggjs/cluster: key and cert must be given; a path among them (ca included) must exist
function httpsFilesOrContents(https) {
  for (const name of [ 'key', 'cert' ]) {
    assert(https[name], `options.https.${name} should exists`);
    if (typeof https[name] === 'string') assert(fs.existsSync(https[name]), `options.https.${name} file should exists`);
  }
  if (typeof https.ca === 'string') assert(fs.existsSync(https.ca), 'options.https.ca file should exists');
}

const EGG3 = {
  generation: 3,
  packageName: 'egg-cluster',
  deprecationPrefix: '[egg-cluster:deprecated]',
  checkHttps: httpsFilesOnly,
  debugSection: name => `egg-cluster:${name}`,
  banner: name => `[master] =================== ${name} start =====================`,
  debugPortLine: '[master] %s started on %s',
  // the app-worker 'disconnect' line is at info, and the master logs each cluster 'listening'
  disconnectLevel: 'info',
  logsListening: true,
  reloadLine: () => '[master] reload workers...',
  pidFileWord: 'pidfile',
  // egg-cluster prints cluster.Worker#exitCode in the death line, a property Node never sets
  deathCode: () => undefined,
  // worker_threads mode: its thread wrapper prints worker_threads.Worker#exitCode, never set either
  threadDeathCode: () => undefined,
  // worker_threads mode: what the master logs on an agent thread's 'error' (the error renamed)
  agentThreadError: (err, agent) => Object.assign(err, { name: 'AgentWorkerError', id: agent.id, pid: agent.pid }),
  // a failed fork of the agent process: egg-cluster logs the error renamed
  agentForkError: err => Object.assign(err, { name: 'AgentWorkerError' }),
  // workers: `require` entries and the framework loaded synchronously with require() as the
  // script starts (egg 4: imported from baseDir, asynchronously)
  bootsSynchronously: true,
  // the app worker writes the port it listens on back into app.options
  setsAppOptionsPort: false,
  // sticky mode needs only `sticky` (egg 4: also a stickyWorkerPort)
  stickyNeedsWorkerPort: false,
  // how the app worker names itself in its own error lines
  appWorkerLabel: () => '[app_worker]',
  // the worker tells the master `realport` as soon as the Application exists
  realportAfterReady: false,
  // the master counts a worker started at cluster 'listening'; egg 4's worker sends app-start itself
  workerSendsAppStart: false,
  // who a message is for: receiverPid first, receiverWorkerId when it is not set
  receiverWorkerIdFirst: false,
  // after an app worker starts, it alone is told the agent's pid
  eggPidsToStartedApp: false,
  senderWorkerId: false,
  loadsWithImport: false,
  // what cfork prints after its worker fields (cfork 1: nothing; cfork 2: the slave fields, which
  // are false and empty for every worker egg forks) and after a refork decision (its count)
  cforkWorkerTail: '',
  cforkReforkTail: () => '',
  cforkUnexpectedTail: '',
  // graceful-process's beforeExit limit in the workers: egg-cluster's 1.x had none
  gracefulTimeout: () => Number(process.env.GRACEFUL_TIMEOUT) || 2 ** 31 - 1,
  workerScript: kind => path.join(ROOT, 'lib', `${kind}_worker.js`),
};

const EGG4 = {
  ...EGG3,
  generation: 4,
  packageName: '@eggjs/cluster',
  deprecationPrefix: '[@eggjs/cluster:deprecated]',
  checkHttps: httpsFilesOrContents,
  debugSection: name => `@eggjs/cluster/${name}`,
  banner: name => `[master] =================== ${name} start 🥚🥚🥚🥚 =====================`,
  debugPortLine: '[master] %s started debug port on %s',
  disconnectLevel: 'log',
  logsListening: false,
  reloadLine: workers => `[master] reload ${workers} workers...`,
  pidFileWord: 'pidFile',
  deathCode: code => code,
  // its thread wrapper's exitCode answers 0, whatever the thread's code
  threadDeathCode: () => 0,
  agentThreadError: (err, agent) => new ClusterAgentWorkerError(agent.id, agent.pid, agent.status, err),
  agentForkError: (err, agent) => new ClusterAgentWorkerError(agent.id, agent.pid, agent.status, EGG3.agentForkError(err)),
  bootsSynchronously: false,
  setsAppOptionsPort: true,
  stickyNeedsWorkerPort: true,
  appWorkerLabel: () => `[app_worker:${process.pid}]`,
  realportAfterReady: true,
  workerSendsAppStart: true,
  receiverWorkerIdFirst: true,
  eggPidsToStartedApp: true,
  senderWorkerId: true,
  cforkWorkerTail: ', isSlave: false, slaveIndex: ',
  cforkReforkTail: count => `, reforkCount: ${count}`,
  cforkUnexpectedTail: ', isSalve: false, salveIndex: ',
  gracefulTimeout: () => Number(process.env.GRACEFUL_TIMEOUT) || 5000,
};

/**
 * The dialect of an egg 4 master loaded through `format` ('esm' or 'commonjs'): its workers run
 * from `dist/<format>/`, where @eggjs/scripts' `eggctl stop` looks for them, and load the
 * framework with `import()` (esm) or `require()` (commonjs).
 * @param {string} format - 'esm' | 'commonjs'
 * @return {Object} the dialect
 */
function egg4(format) {
  return {
    ...EGG4,
    moduleFormat: format,
    loadsWithImport: format === 'esm',
    workerScript: kind => path.join(ROOT, 'dist', format, `${kind}_worker.js`),
  };
}

/**
 * The master's dialect.
 * @param {Object} options - parsed options (`framework` resolved)
 * @param {string} [entry] - 'esm' when loaded through the ESM entry
 * @return {Object} the dialect
 */
function masterDialect(options, entry) {
  if (entry === 'esm') return egg4('esm');
  return frameworkGeneration(options.framework) >= 4 ? egg4('commonjs') : EGG3;
}

/**
 * A worker's dialect, from the script the master started it with.
 * @param {string} [script] - process.argv[1]
 * @return {Object} the dialect
 */
function workerDialect(script = process.argv[1] || '') {
  const match = /[\\/]dist[\\/](esm|commonjs)[\\/](?:agent|app)_worker\.js$/.exec(script);
  return match ? egg4(match[1]) : EGG3;
}

module.exports = { masterDialect, workerDialect, frameworkGeneration, majorOf, EGG3 };
