'use strict';

const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const assert = require('assert');
const mm = require('egg-mock');
const parseOptions = require('../lib/options');
const utils = require('./utils');

describe('test/options.test.js', () => {
  const baseDir = utils.getFilepath('apps/options');
  const eggPath = path.dirname(require.resolve('egg/package.json'));
  const key = utils.getFilepath('apps/https-server/server.key');
  const cert = utils.getFilepath('apps/https-server/server.crt');

  afterEach(mm.restore);

  it('fills egg-cluster defaults', () => {
    mm(process.env, 'EGG_SERVER_ENV', '');
    // no CPU quota: every CPU this process may use (lib/worker_count.js; test/worker_count.test.js)
    mm(process.env, 'EGG_CLUSTER_RS_TEST_CGROUP_ROOT', os.tmpdir());
    const options = parseOptions({ baseDir });
    assert.strictEqual(options.framework, eggPath);
    assert.strictEqual(options.baseDir, baseDir);
    assert.strictEqual(options.workers, os.availableParallelism());
    assert.strictEqual(options.port, undefined);
    assert.strictEqual(options.https, false);
    assert.strictEqual(options.reusePort, false);
    assert.strictEqual(options.startMode, 'process');
    assert.deepStrictEqual(options.ports, []);
    assert.strictEqual(options.plugins, null);
    assert.strictEqual(options.env, null);
  });

  it('keeps a default when the option is null or undefined', () => {
    mm(process.env, 'EGG_CLUSTER_RS_TEST_CGROUP_ROOT', os.tmpdir());
    const options = parseOptions({ baseDir, workers: null, port: undefined, plugins: null });
    assert.strictEqual(options.workers, os.availableParallelism());
    assert.strictEqual(options.port, undefined);
    assert.strictEqual(options.plugins, null);
  });

  it('parses port and workers as integers', () => {
    const options = parseOptions({ baseDir, port: '7001', workers: '3' });
    assert.strictEqual(options.port, 7001);
    assert.strictEqual(options.workers, 3);
    assert.strictEqual(parseOptions({ baseDir, port: 'abc' }).port, undefined);
  });

  it('takes env from EGG_SERVER_ENV unless given', () => {
    mm(process.env, 'EGG_SERVER_ENV', 'prod');
    assert.strictEqual(parseOptions({ baseDir }).env, 'prod');
    assert.strictEqual(parseOptions({ baseDir, env: 'local' }).env, 'local');
  });

  it('turns a single require into an array', () => {
    assert.deepStrictEqual(parseOptions({ baseDir, require: 'ts-node/register' }).require, [ 'ts-node/register' ]);
    assert.deepStrictEqual(parseOptions({ baseDir, require: [ 'a', 'b' ] }).require, [ 'a', 'b' ]);
  });

  it('resolves framework from an absolute path and from customEgg', () => {
    const framework = utils.getFilepath('framework-without-agent');
    assert.strictEqual(parseOptions({ baseDir, framework: eggPath }).framework, eggPath);
    assert.strictEqual(parseOptions({ baseDir, customEgg: eggPath }).framework, eggPath);
    // framework wins over customEgg
    assert.throws(() => parseOptions({ baseDir, framework, customEgg: eggPath }), /should define Agent/);
  });

  it('throws when baseDir has no package.json', () => {
    const dir = utils.getFilepath('apps/no-such-app');
    assert.throws(() => parseOptions({ baseDir: dir }), {
      message: `${path.join(dir, 'package.json')} should exist`,
    });
  });

  it('throws when the framework has no Agent', () => {
    const framework = utils.getFilepath('framework-without-agent');
    assert.throws(() => parseOptions({ baseDir, framework }), {
      message: `should define Agent in ${framework}`,
    });
  });

  it('throws the error the framework\'s own require throws', () => {
    const framework = utils.getFilepath('framework-throws');
    assert.throws(() => parseOptions({ baseDir, framework }), err => {
      assert(err instanceof RangeError);
      assert.strictEqual(err.message, 'framework-throws cannot load');
      assert.strictEqual(err.code, 'ERR_FRAMEWORK_BROKEN');
      assert(err.stack.includes(path.join('framework-throws', 'index.js')), err.stack);
      return true;
    });
  });

  it('checks the framework without loading it in the master, and its output still shows', () => {
    const framework = utils.getFilepath('framework-noisy');
    const script = `
      const parseOptions = require(${JSON.stringify(path.join(__dirname, '../lib/options'))});
      const options = parseOptions({ baseDir: ${JSON.stringify(baseDir)}, framework: ${JSON.stringify(framework)} });
      const loaded = Object.keys(require.cache).filter(f => f.includes('framework-noisy') || f.includes('/node_modules/egg/'));
      console.log('RESULT ' + JSON.stringify({ framework: options.framework, loaded }));`;
    const res = spawnSync(process.execPath, [ '-e', script ], { encoding: 'utf8', timeout: 30000 });
    assert.strictEqual(res.status, 0, res.stderr);
    assert(res.stdout.startsWith('framework-noisy loaded\n'), res.stdout);
    const line = res.stdout.split('\n').find(l => l.startsWith('RESULT '));
    assert.deepStrictEqual(JSON.parse(line.slice(7)), { framework, loaded: [] });
  });

  it('finds a framework by package name in the app\'s or the cwd\'s node_modules', () => {
    assert.strictEqual(parseOptions({ baseDir, framework: 'egg' }).framework, path.join(process.cwd(), 'node_modules', 'egg'));
  });

  it('throws when the framework cannot be found', () => {
    assert.throws(() => parseOptions({ baseDir, framework: 'no-such-framework' }), /no-such-framework is not found in/);
  });

  describe('https', () => {
    it('defaults the port to 8443', () => {
      const options = parseOptions({ baseDir, https: { key, cert } });
      assert.strictEqual(options.port, 8443);
      assert.deepStrictEqual(options.https, { key, cert });
    });

    it('keeps an explicit port', () => {
      assert.strictEqual(parseOptions({ baseDir, port: 7443, https: { key, cert } }).port, 7443);
    });

    it('converts `https: true` with top-level key and cert, warning once', () => {
      const warnings = [];
      mm(console, 'warn', msg => warnings.push(msg));
      const options = parseOptions({ baseDir, https: true, key, cert });
      assert.deepStrictEqual(options.https, { key, cert });
      assert.deepStrictEqual(warnings, [
        '[egg-cluster:deprecated] [master] Please use `https: { key, cert, ca }` instead of `https: true`',
      ]);
    });

    it('egg 4: warns with @eggjs/cluster\'s prefix and checks as it does (a missing file, a missing key)', () => {
      const framework = utils.getFilepath('egg4');
      const warnings = [];
      mm(console, 'warn', msg => warnings.push(msg));
      assert.deepStrictEqual(parseOptions({ baseDir, framework, https: true, key, cert }).https, { key, cert });
      assert.deepStrictEqual(warnings, [
        '[@eggjs/cluster:deprecated] [master] Please use `https: { key, cert, ca }` instead of `https: true`',
      ]);
      assert.throws(() => parseOptions({ baseDir, framework, https: { cert } }), { message: 'options.https.key should exists' });
      assert.throws(() => parseOptions({ baseDir, framework, https: { key: '/no/such/key', cert } }),
        { message: 'options.https.key file should exists' });
      assert.throws(() => parseOptions({ baseDir, framework, https: { key, cert, ca: '/no/such/ca' } }),
        { message: 'options.https.ca file should exists' });
    });

    it('throws when key, cert or ca is missing', () => {
      assert.throws(() => parseOptions({ baseDir, https: { cert } }), { message: 'options.https.key should exists' });
      assert.throws(() => parseOptions({ baseDir, https: { key, cert: '/no/such/cert' } }),
        { message: 'options.https.cert should exists' });
      assert.throws(() => parseOptions({ baseDir, https: { key, cert, ca: '/no/such/ca' } }),
        { message: 'options.https.ca should exists' });
    });
  });

  it('accepts startMode worker_threads with its ports', () => {
    const options = parseOptions({ baseDir, startMode: 'worker_threads', ports: [ 17001, 17002 ] });
    assert.strictEqual(options.startMode, 'worker_threads');
    assert.deepStrictEqual(options.ports, [ 17001, 17002 ]);
    assert.deepStrictEqual(parseOptions({ baseDir, startMode: 'worker_threads' }).ports, []);
  });

  it('keeps an unknown startMode as given, which starts processes as egg-cluster does', () => {
    // egg-cluster runs threads only for 'worker_threads'; any other value is process mode
    assert.strictEqual(parseOptions({ baseDir, startMode: 'fibers' }).startMode, 'fibers');
    assert.strictEqual(parseOptions({ baseDir, startMode: 'fibers', sticky: true }).sticky, true);
  });

  it('refuses sticky with startMode worker_threads with a clear error', () => {
    assert.throws(() => parseOptions({ baseDir, startMode: 'worker_threads', sticky: true }), err => {
      assert.strictEqual(err.name, 'StartModeOptionError');
      assert.match(err.message, /sticky mode is not available with startMode "worker_threads"/);
      return true;
    });
  });

  it('refuses ports that are not an array in worker_threads mode', () => {
    assert.throws(() => parseOptions({ baseDir, startMode: 'worker_threads', ports: 17001 }),
      { name: 'StartModeOptionError', message: '[master] options.ports should be an array of ports, got 17001' });
  });

  it('marks isDebug when the master runs with --inspect', () => {
    mm(process, 'execArgv', [ '--inspect=0' ]);
    assert.strictEqual(parseOptions({ baseDir }).isDebug, true);
    mm(process, 'execArgv', []);
    assert.strictEqual(parseOptions({ baseDir }).isDebug, undefined);
  });

  it('silences deprecations in production', () => {
    mm(process.env, 'NODE_ENV', 'production');
    mm(process.env, 'NO_DEPRECATION', '');
    parseOptions({ baseDir });
    assert.strictEqual(process.env.NO_DEPRECATION, '*');
  });
});
