'use strict';

/**
 * End to end, as a user gets it: `npm pack` this project, install the tarball into a separate
 * egg 3 app (a copy of test/fixtures/e2e-app) through npm `overrides` of `egg-cluster`, run
 * that app's own suite with `egg-bin test` (mm.cluster → egg's startCluster →
 * require('egg-cluster') → us), then `egg-scripts start --daemon` / `egg-scripts stop` it.
 * Then the same for egg 4: `overrides` of `@eggjs/cluster`, @eggjs/bin 7's `egg-bin test`
 * (@eggjs/mock 6), @eggjs/scripts 4's `eggctl start --daemon` / `eggctl stop`.
 *
 * Needs npm and the registry (or a warm npm cache: installs use --prefer-offline).
 * Skip it only on purpose: EGG_CLUSTER_RS_SKIP_E2E=1. EGG_CLUSTER_RS_KEEP_E2E=1 keeps the
 * temp dir for a look afterwards.
 */

const fs = require('fs');
const os = require('os');
const net = require('net');
const path = require('path');
const http = require('http');
const assert = require('assert');
const { spawn, execFileSync } = require('child_process');

const ROOT = path.join(__dirname, '..');
const TEMPLATE = path.join(__dirname, 'fixtures/e2e-app');
const PKG = require('../package.json');
const ADDON = 'egg-cluster-rs.linux-x64-gnu.node';
const WORKERS = 2;

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

// what differs between an egg 3 and an egg 4 app: its packages, its tools, where it installs us
// and what the process command lines look like
const GENERATIONS = {
  3: {
    deps: { egg: '3' },
    devDeps: { 'egg-bin': '6', 'egg-mock': '5', 'egg-scripts': '2' },
    clusterPackage: 'egg-cluster',
    scripts: 'egg-scripts',
    masterCmd: 'egg-scripts/lib/start-cluster',
    workerCmd: kind => `node_modules/egg-cluster/lib/${kind}_worker.js`,
  },
  4: {
    deps: { egg: '4' },
    devDeps: { '@eggjs/bin': '7', '@eggjs/mock': '6', '@eggjs/scripts': '4' },
    clusterPackage: '@eggjs/cluster',
    scripts: 'eggctl',
    masterCmd: '@eggjs/scripts/scripts/start-cluster',
    // where @eggjs/scripts 4's `eggctl stop` looks for leftover workers
    workerCmd: kind => `node_modules/@eggjs/cluster/dist/commonjs/${kind}_worker.js`,
  },
};

// the environment of a user's shell: nothing from the npm script or the egg test running us
function cleanEnv(extra) {
  const env = {};
  for (const [ key, value ] of Object.entries(process.env)) {
    if (/^(npm_|EGG_|MOCK_HOME_DIR$|NODE_ENV$|INIT_CWD$|NODE_OPTIONS$)/i.test(key)) continue;
    env[key] = value;
  }
  return Object.assign(env, {
    // the user's own home (and npm cache), even if a test before us mocked HOME
    HOME: os.userInfo().homedir,
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
  }, extra);
}

/**
 * Runs a command in its own process group; on timeout the whole group is SIGKILLed.
 * @param {String} cmd -
 * @param {Array<String>} args -
 * @param {Object} options - { cwd, env, timeout (ms) }
 * @return {Promise<{code, signal, stdout, stderr, ms}>} never rejects
 */
function run(cmd, args, options) {
  const { cwd, env, timeout } = options;
  return new Promise(resolve => {
    const start = Date.now();
    const child = spawn(cmd, args, { cwd, env, detached: true, stdio: [ 'ignore', 'pipe', 'pipe' ] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', chunk => { stdout += chunk; });
    child.stderr.on('data', chunk => { stderr += chunk; });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }, timeout);
    child.on('error', err => { stderr += `\nspawn error: ${err.stack}`; });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) stderr += `\n[e2e] ${cmd} ${args.join(' ')} timed out after ${timeout}ms`;
      resolve({ code, signal, stdout, stderr, ms: Date.now() - start });
    });
  });
}

function describeRun(res) {
  return `exit ${res.code} (signal ${res.signal}) after ${res.ms}ms\n--- stdout\n${res.stdout}\n--- stderr\n${res.stderr}`;
}

// `pid args` of the running node processes whose command line contains `needle`
function processesWith(needle) {
  return execFileSync('ps', [ '-wweo', 'pid,args' ]).toString().split('\n')
    .map(line => line.match(/^\s*(\d+)\s+(.*)$/))
    .filter(m => m && m[2].includes(needle) && !m[2].startsWith('ps '))
    .map(m => ({ pid: Number(m[1]), cmd: m[2] }));
}

// true while a process with this pid runs (a zombie counts as gone)
function alive(pid) {
  try {
    process.kill(pid, 0);
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function portOpen(port) {
  return new Promise(resolve => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

function portFree(port) {
  return new Promise(resolve => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, () => server.close(() => resolve(true)));
  });
}

// a free port in [from, to], starting at a random one
async function freePort(from, to) {
  const span = to - from + 1;
  const first = Math.floor(Math.random() * span);
  for (let i = 0; i < span; i++) {
    const port = from + (first + i) % span;
    if (await portFree(port) && !await portOpen(port)) return port;
  }
  throw new Error(`no free port in ${from}-${to}`);
}

// GET on a fresh connection (so the master's round robin spreads requests over the workers)
function get(port, pathname) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathname, agent: false, timeout: 10000 }, res => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', chunk => { body += chunk; });
      res.on('end', () => {
        let json;
        try {
          json = JSON.parse(body);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode, body: json, text: body });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${pathname} timed out`)));
    req.on('error', reject);
  });
}

function copyDir(from, to) {
  fs.mkdirSync(to, { recursive: true });
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    if ([ 'node_modules', 'logs', 'run' ].includes(entry.name)) continue;
    const src = path.join(from, entry.name);
    // the template's suite is *.e2e.js so that our own mocha glob leaves it alone
    const dst = path.join(to, entry.name.replace(/\.e2e\.js$/, '.test.js'));
    if (entry.isDirectory()) copyDir(src, dst);
    else fs.copyFileSync(src, dst);
  }
}

describe('test/e2e_pack.test.js', function() {
  if (process.env.EGG_CLUSTER_RS_SKIP_E2E === '1') {
    it.skip('npm pack → egg app install → egg-bin test → egg-scripts start/stop (skipped: EGG_CLUSTER_RS_SKIP_E2E=1)');
    return;
  }

  this.timeout(10 * 60 * 1000);

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'egg-cluster-rs-e2e-'));
  const packDir = path.join(tmp, 'pack');
  const env = cleanEnv();
  let tarball;
  let failed = false;

  before(() => {
    fs.mkdirSync(packDir);
  });

  afterEach(function() {
    if (this.currentTest.state === 'failed') failed = true;
  });

  after(() => {
    const removeLater = dir => spawn('rm', [ '-rf', dir ], { detached: true, stdio: 'ignore' }).unref();
    if (process.env.EGG_CLUSTER_RS_KEEP_E2E === '1') {
      console.log('      [e2e] kept %s', tmp);
    } else if (failed) {
      console.log('      [e2e] kept %s (without the apps\' node_modules)', tmp);
    } else {
      // removing ~750 packages per app takes a while on a busy machine: a detached rm does it
      removeLater(tmp);
    }
  });

  it('npm pack builds the addon and packs what an install needs, nothing else', async () => {
    const res = await run('npm', [ 'pack', '--json', '--pack-destination', packDir ], { cwd: ROOT, env, timeout: 5 * 60 * 1000 });
    assert.strictEqual(res.code, 0, describeRun(res));
    // (a lifecycle script may print to stdout before npm's JSON)
    const [ info ] = JSON.parse(res.stdout.slice(res.stdout.search(/^\[\s*$/m)));
    tarball = path.join(packDir, info.filename);
    assert(fs.existsSync(tarball), tarball);

    const files = execFileSync('tar', [ '-tzf', tarball ]).toString().trim()
      .split('\n')
      .map(file => file.replace(/^package\//, ''));
    for (const file of [ ADDON, 'binding.js', 'index.js', 'index.d.ts', 'core.js', 'core.d.ts', 'package.json',
      'lib/app_worker.js', 'lib/agent_worker.js', 'lib/master.js', 'lib/dialect.js',
      'dist/esm/index.js', 'dist/esm/package.json', 'dist/commonjs/package.json',
      'dist/esm/app_worker.js', 'dist/esm/agent_worker.js', 'dist/commonjs/app_worker.js', 'dist/commonjs/agent_worker.js' ]) {
      assert(files.includes(file), `${file} is not in the tarball:\n${files.join('\n')}`);
    }
    const unwanted = files.filter(file =>
      /^(src|test|__test__|target|benchmark|example|scripts|\.ci|node_modules)\//.test(file) ||
      /^Cargo\.|^build\.rs$|\.tgz$|\.(test|spec)\.m?js$/.test(file));
    assert.deepStrictEqual(unwanted, [], `the tarball carries ${unwanted.join(', ')}`);

    // the packed addon is the one prepare just built, and the package never requires itself
    // by name (under overrides it lives in node_modules/egg-cluster)
    const extracted = path.join(packDir, 'x');
    fs.mkdirSync(extracted);
    execFileSync('tar', [ '-xzf', tarball, '-C', extracted ]);
    assert(fs.readFileSync(path.join(extracted, 'package', ADDON)).equals(fs.readFileSync(path.join(ROOT, ADDON))),
      'the packed addon differs from the built one');
    for (const file of files.filter(f => f.endsWith('.js'))) {
      const source = fs.readFileSync(path.join(extracted, 'package', file), 'utf8');
      assert.doesNotMatch(source, /require\(\s*['"]egg-cluster-rs['"]\s*\)/, file);
    }
  });

  for (const generation of [ 3, 4 ]) {
    describe(`egg ${generation}`, () => generationSuite(generation, { tmp, env, tarball: () => tarball }));
  }
});

/**
 * One generation's app: install the tarball through `overrides`, run its suite, start it as a
 * daemon with its own scripts tool and stop it.
 * @param {number} generation - 3 or 4
 * @param {Object} shared - `{ tmp, env, tarball() }` from the pack step
 */
function generationSuite(generation, { tmp, env, tarball }) {
  const gen = GENERATIONS[generation];
  const appDir = path.join(tmp, `app-egg${generation}`);
  const home = path.join(tmp, `home-egg${generation}`);
  const title = `e2e-${generation}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const scriptsEnv = cleanEnv({ HOME: home, MOCK_HOME_DIR: home });
  let installed = false;
  let started = false;
  let failed = false;
  let npmInstall;

  before(() => {
    fs.mkdirSync(home);
  });

  afterEach(function() {
    if (this.currentTest.state === 'failed') failed = true;
  });

  after(async () => {
    if (started) {
      await run('npx', [ gen.scripts, 'stop', `--title=${title}` ], { cwd: appDir, env: scriptsEnv, timeout: 30000 });
    }
    // whatever is left of our daemon (by its unique title) or of the app's test run
    for (const { pid } of [ ...processesWith(`"title":"${title}"`), ...processesWith(appDir) ]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    if (failed && process.env.EGG_CLUSTER_RS_KEEP_E2E !== '1') {
      // the logs (app/logs, home/logs) and the tarball stay for a look; node_modules goes
      const trash = `${appDir}.node_modules`;
      if (fs.existsSync(path.join(appDir, 'node_modules'))) fs.renameSync(path.join(appDir, 'node_modules'), trash);
      spawn('rm', [ '-rf', trash ], { detached: true, stdio: 'ignore' }).unref();
    }
  });

  it(`installs into an egg ${generation} app as ${gen.clusterPackage} through npm overrides`, async () => {
    assert(tarball(), 'npm pack failed');
    copyDir(TEMPLATE, appDir);
    assert(fs.existsSync(path.join(appDir, 'test/cluster.test.js')));
    fs.writeFileSync(path.join(appDir, 'package.json'), JSON.stringify({
      name: 'e2e-app',
      version: '1.0.0',
      private: true,
      scripts: {
        test: 'egg-bin test',
        start: `${gen.scripts} start --daemon --title=${title}`,
        stop: `${gen.scripts} stop --title=${title}`,
      },
      dependencies: gen.deps,
      devDependencies: gen.devDeps,
      overrides: { [gen.clusterPackage]: `file:${tarball()}` },
    }, null, 2));

    npmInstall = await run('npm', [ 'install', '--no-audit', '--no-fund', '--prefer-offline' ],
      { cwd: appDir, env, timeout: 4 * 60 * 1000 });
    assert.strictEqual(npmInstall.code, 0, describeRun(npmInstall));

    const ls = await run('npm', [ 'ls', gen.clusterPackage, '--json' ], { cwd: appDir, env, timeout: 60000 });
    assert.strictEqual(ls.code, 0, describeRun(ls));
    const tree = JSON.parse(ls.stdout);
    assert.deepStrictEqual(Object.keys(tree.dependencies), [ 'egg' ], ls.stdout);
    const dep = tree.dependencies.egg.dependencies[gen.clusterPackage];
    assert.strictEqual(dep.version, PKG.version, ls.stdout);
    assert.strictEqual(dep.resolved, `file:${tarball()}`, ls.stdout);
    const lsText = await run('npm', [ 'ls', gen.clusterPackage ], { cwd: appDir, env, timeout: 60000 });
    assert(lsText.stdout.includes(`${gen.clusterPackage}@npm:egg-cluster-rs@${PKG.version}`), lsText.stdout);

    const installedPkg = JSON.parse(fs.readFileSync(path.join(appDir, 'node_modules', gen.clusterPackage, 'package.json'), 'utf8'));
    assert.strictEqual(installedPkg.name, 'egg-cluster-rs');
    assert(fs.existsSync(path.join(appDir, 'node_modules', gen.clusterPackage, ADDON)));
    installed = true;
  });

  it('installing the tarball runs and announces no install script of ours', () => {
    assert(npmInstall, 'npm install did not run');
    // npm 11 lists dependencies' install scripts not covered by allowScripts (and fails the
    // install with --strict-allow-scripts); for a tarball or git dependency it counts `prepare`
    const ours = (npmInstall.stdout + npmInstall.stderr).split('\n')
      .filter(line => /install-scripts/.test(line) && /egg-cluster(-rs)?@/.test(line));
    assert.deepStrictEqual(ours, [], 'npm install flags our package as having an install script');
  });

  it('the app\'s own suite passes under egg-bin test with mm.cluster, run by our master', async () => {
    assert(installed, 'the app is not installed');
    const port = await freePort(17300, 17349);
    const res = await run('npx', [ 'egg-bin', 'test' ],
      { cwd: appDir, env: cleanEnv({ E2E_CLUSTER_PORT: String(port), E2E_EGG: String(generation) }), timeout: 3 * 60 * 1000 });
    assert.strictEqual(res.code, 0, describeRun(res));
    // every test of the app's suite ran and passed, the checks that our code ran included
    const suite = fs.readFileSync(path.join(TEMPLATE, 'test/cluster.e2e.js'), 'utf8');
    const count = suite.match(/^ {2}it\(/mg).length;
    assert.match(res.stdout, new RegExp(`${count} passing`), describeRun(res));
    assert.doesNotMatch(res.stdout, /failing|pending/, describeRun(res));
    for (const name of [ 'egg resolves its cluster package to egg-cluster-rs', 'the master process has the egg-cluster-rs addon loaded' ]) {
      assert(res.stdout.includes(name), describeRun(res));
    }
    // mm.cluster's close() waited for the master, and the master for its workers
    for (let i = 0; i < 50 && processesWith(appDir).length; i++) await sleep(100);
    assert.deepStrictEqual(processesWith(appDir), [], 'the test run left processes behind');
  });

  describe(`${gen.scripts} start --daemon / stop`, () => {
    let port;
    let master;
    let workers;

    it('starts the app as a daemon', async () => {
      assert(installed, 'the app is not installed');
      port = await freePort(17350, 17399);
      const res = await run('npx', [ gen.scripts, 'start', '--daemon', `--port=${port}`, `--workers=${WORKERS}`, `--title=${title}` ],
        { cwd: appDir, env: scriptsEnv, timeout: 2 * 60 * 1000 });
      started = true;
      assert.strictEqual(res.code, 0, describeRun(res));
      assert.match(res.stdout, new RegExp(`egg started on http://127\\.0\\.0\\.1:${port}`), describeRun(res));
      // egg-scripts fails a start on any stderr output; nothing went there afterwards either
      assert.strictEqual(fs.readFileSync(path.join(home, 'logs/master-stderr.log'), 'utf8'), '');

      const procs = processesWith(`"title":"${title}"`);
      const masters = procs.filter(p => p.cmd.includes(gen.masterCmd));
      assert.strictEqual(masters.length, 1, JSON.stringify(procs, null, 2));
      master = masters[0].pid;
      workers = {
        app: procs.filter(p => p.cmd.includes(gen.workerCmd('app'))).map(p => p.pid),
        agent: procs.filter(p => p.cmd.includes(gen.workerCmd('agent'))).map(p => p.pid),
      };
      assert.strictEqual(workers.app.length, WORKERS, JSON.stringify(procs, null, 2));
      assert.strictEqual(workers.agent.length, 1, JSON.stringify(procs, null, 2));
      // egg-scripts exited: the daemon master outlives losing its parent's IPC channel
      assert(alive(master));
      assert(fs.readFileSync(`/proc/${master}/maps`, 'utf8').includes(`/node_modules/${gen.clusterPackage}/${ADDON}`),
        'the daemon master has not loaded our addon');
    });

    it('answers HTTP from every app worker, with app ↔ agent messaging', async () => {
      assert(master, 'the daemon did not start');
      const pids = new Set();
      for (let i = 0; i < 10; i++) {
        const res = await get(port, '/');
        assert.strictEqual(res.status, 200, res.text);
        assert.strictEqual(res.body.ppid, master);
        assert.strictEqual(res.body.serverDidReady, true);
        pids.add(res.body.pid);
      }
      assert.deepStrictEqual([ ...pids ].sort(), workers.app.slice().sort());

      const info = await get(port, '/cluster-info');
      assert.strictEqual(info.status, 200, info.text);
      assert.strictEqual(info.body.scriptPackage.name, 'egg-cluster-rs');
      assert.strictEqual(info.body.options.title, title);

      const echoes = new Set();
      for (let i = 0; i < 6; i++) {
        const res = await get(port, `/agent-echo?msg=m${i}`);
        assert.strictEqual(res.status, 200, res.text);
        assert.strictEqual(res.body.msg, `m${i}`);
        assert.deepStrictEqual([ res.body.agentPid ], workers.agent);
        echoes.add(res.body.pid);
      }
      assert.strictEqual(echoes.size, WORKERS);

      const state = await get(port, '/agent-state');
      assert.strictEqual(state.status, 200, state.text);
      assert.strictEqual(state.body.ppid, master);
      assert.strictEqual(state.body.serverDidReady, true);
      assert.deepStrictEqual(state.body.appPids.slice().sort(), workers.app.slice().sort());
    });

    it(`${gen.scripts} stop ends the master and every worker and closes the port`, async () => {
      assert(master, 'the daemon did not start');
      const res = await run('npx', [ gen.scripts, 'stop', `--title=${title}` ], { cwd: appDir, env: scriptsEnv, timeout: 60000 });
      assert.strictEqual(res.code, 0, describeRun(res));
      assert.match(res.stdout, new RegExp(`got master pid \\["?${master}"?\\]`), describeRun(res));
      // the master closed its workers itself: egg-scripts' SIGKILL sweep found nothing
      assert.doesNotMatch(res.stdout, /not killed by master/, describeRun(res));

      const all = [ master, ...workers.app, ...workers.agent ];
      for (let i = 0; i < 50 && all.some(alive); i++) await sleep(100);
      assert.deepStrictEqual(all.filter(alive), [], 'still running');
      assert.deepStrictEqual(processesWith(`"title":"${title}"`), []);
      assert.strictEqual(await portOpen(port), false, `port ${port} still accepts connections`);
      started = false;

      const stdout = fs.readFileSync(path.join(home, 'logs/master-stdout.log'), 'utf8');
      assert.match(stdout, /\[master\] master is killed by signal SIGTERM, closing/);
      assert.match(stdout, /\[master\] exit with code:0/);
      assert.strictEqual(fs.readFileSync(path.join(home, 'logs/master-stderr.log'), 'utf8'), '');
    });
  });
}
