'use strict';

/**
 * Finding the framework and checking what it exports, without loading it in the master.
 *
 * egg-cluster 2.x requires the framework (egg, ~33 MiB of heap and code) in the master only to
 * assert that it exports `Application` and `Agent`; the master never uses it afterwards. Here
 * the agent answers that as it loads the framework (lib/master.js startAgentEarly), or, when it
 * cannot, a short-lived probe process does (assertFramework); both answer with verdictOf() and
 * judgeFramework() throws the errors egg-cluster's require and asserts would have thrown.
 */

const fs = require('fs');
const path = require('path');
const assert = require('assert');

// the cwd when this module was loaded: tests that stub process.cwd() later still find the
// framework installed next to the project that started them
const startCwd = process.cwd();
const PROBE = path.join(__dirname, 'framework_probe.js');
// set (to the fd number) for an agent that reports on the framework through a startup pipe
const STARTUP_FD_ENV = 'EGG_CLUSTER_RS_STARTUP_FD';

function readJSON(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

// Where an installed framework package lives: the app's node_modules, the cwd's, the start
// cwd's, then wherever node resolves it from here (a monorepo's hoisted node_modules).
function findInstalled(name, appModules) {
  const dirs = new Set([
    appModules,
    path.join(process.cwd(), 'node_modules'),
    path.join(startCwd, 'node_modules'),
  ]);
  try {
    const pkgFile = require.resolve(`${name}/package.json`);
    // <modules>/<name>/package.json, or <modules>/@scope/name/package.json
    dirs.add(path.resolve(path.dirname(pkgFile), ...name.split('/').map(() => '..')));
  } catch {
    // not resolvable from here: only the directories above count
  }
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    if (fs.existsSync(candidate)) return candidate;
  }
  throw new Error(`${name} is not found in ${Array.from(dirs)}`);
}

/**
 * The framework directory for an app, with egg-utils' lookup order and messages: an absolute
 * `framework` as is, a package name from the app's node_modules, else `egg.framework` of the
 * app's package.json, else egg.
 * @param {Object} options - the app's options
 * @param {String} options.baseDir - the app directory
 * @param {String} [options.framework] - an absolute path or a package name
 * @return {String} absolute directory of the framework
 */
function getFrameworkPath({ baseDir, framework }) {
  const pkgFile = path.join(baseDir, 'package.json');
  assert(fs.existsSync(pkgFile), `${pkgFile} should exist`);
  const appModules = path.join(baseDir, 'node_modules');
  const pkg = readJSON(pkgFile);

  if (framework) {
    if (!path.isAbsolute(framework)) return findInstalled(framework, appModules);
    assert(fs.existsSync(framework), `${framework} should exist`);
    return framework;
  }
  const named = pkg.egg && pkg.egg.framework;
  return findInstalled(named || 'egg', appModules);
}

// node switches that must not reach the probe: a debugger port it would fight the workers
// for, and `-e <code>` / `-p <code>`, which would run the master's own code again
function probeExecArgv() {
  const out = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (/^--(inspect|debug)/.test(arg)) continue;
    if (/^(-e|--eval|-p|--print|-pe)$/.test(arg)) {
      i++;
      continue;
    }
    if (/^(--eval|--print)=/.test(arg)) continue;
    out.push(arg);
  }
  return out;
}

function rebuildError(info) {
  const Ctor = typeof globalThis[info.name] === 'function' && globalThis[info.name].prototype instanceof Error
    ? globalThis[info.name]
    : Error;
  const err = new Ctor(info.message);
  if (Ctor === Error && info.name && info.name !== 'Error') err.name = info.name;
  if (info.code !== undefined) err.code = info.code;
  if (info.stack) err.stack = info.stack;
  return err;
}

/**
 * Require the framework in a child node process (same node, same switches, same environment)
 * and assert that it exports Application and Agent. A framework that fails to load throws
 * its own error here, as `require()` would have in the master.
 * @param {String} frameworkPath - from getFrameworkPath()
 */
function assertFramework(frameworkPath) {
  // child_process (and the net module it loads) only on this path
  const result = require('child_process').spawnSync(process.execPath, [ ...probeExecArgv(), PROBE, frameworkPath ], {
    env: process.env,
    cwd: process.cwd(),
    // the framework's own console output goes where the master's would; the verdict comes
    // back on fd 3
    stdio: [ 'ignore', 'inherit', 'inherit', 'pipe' ],
    windowsHide: true,
    maxBuffer: 1024 * 1024,
  });
  if (result.error) throw result.error;
  const raw = result.output && result.output[3] ? result.output[3].toString() : '';
  if (!judgeFramework(frameworkPath, raw)) {
    throw new Error(`[master] could not check framework ${frameworkPath}: its probe exited with ` +
      `${result.signal ? `signal ${result.signal}` : `code ${result.status}`} and no answer`);
  }
}

/**
 * What a framework check answered (framework_probe.js, or the agent through its startup pipe):
 * true when the framework exports Application and Agent, false when there is no usable answer;
 * throws the framework's load error, or the assertion egg-cluster makes.
 * @param {String} frameworkPath - the framework directory
 * @param {String|null} raw - the JSON answer
 * @return {Boolean} whether the answer vouches for the framework
 */
function judgeFramework(frameworkPath, raw) {
  let verdict;
  try {
    verdict = JSON.parse(raw);
  } catch {
    return false;
  }
  if (!verdict || typeof verdict !== 'object') return false;
  if (verdict.error) throw rebuildError(verdict.error);
  assert(verdict.application, `should define Application in ${frameworkPath}`);
  assert(verdict.agent, `should define Agent in ${frameworkPath}`);
  return true;
}

/**
 * The answer a framework check gives, as JSON: what the module exports, or how requiring it
 * failed. Used by framework_probe.js and by the agent for its startup pipe.
 * @param {*} framework - the required module, when `err` is undefined
 * @param {*} [err] - what its require threw
 * @return {String} JSON
 */
function verdictOf(framework, err) {
  if (err !== undefined) {
    const e = err instanceof Error ? err : new Error(String(err));
    return JSON.stringify({ error: { name: e.name, message: e.message, code: e.code, stack: e.stack } });
  }
  return JSON.stringify({ application: !!(framework && framework.Application), agent: !!(framework && framework.Agent) });
}

module.exports = { getFrameworkPath, assertFramework, judgeFramework, verdictOf, readJSON, STARTUP_FD_ENV };
