'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const assert = require('assert');
const { masterDialect, workerDialect, frameworkGeneration, majorOf } = require('../lib/dialect');
const { getFilepath } = require('./utils');

// a framework directory with this package.json
function framework(pkg) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'egg-cluster-rs-dialect-'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(pkg));
  return dir;
}

describe('test/dialect.test.js', () => {
  it('reads a major version from a version or a range', () => {
    assert.strictEqual(majorOf('4.0.10'), 4);
    assert.strictEqual(majorOf('^4.0.10'), 4);
    assert.strictEqual(majorOf('~3.34'), 3);
    assert.strictEqual(majorOf('npm:egg@^4.1.0'), 4);
    assert.strictEqual(majorOf('>=4'), 4);
    assert.strictEqual(majorOf('latest'), null);
    assert.strictEqual(majorOf(undefined), null);
  });

  it('egg itself: its major version decides', () => {
    assert.strictEqual(frameworkGeneration(path.dirname(require.resolve('egg/package.json'))), 3);
    assert.strictEqual(frameworkGeneration(path.dirname(require.resolve('egg4/package.json'))), 4);
    assert.strictEqual(frameworkGeneration(framework({ name: 'egg', version: '4.1.0' })), 4);
  });

  it('a framework built on egg: its egg dependency, or a dependency on @eggjs/cluster', () => {
    assert.strictEqual(frameworkGeneration(getFilepath('egg')), 3);
    assert.strictEqual(frameworkGeneration(getFilepath('egg4')), 4);
    assert.strictEqual(frameworkGeneration(framework({ name: 'my-fw', dependencies: { egg: '^3.20.0' } })), 3);
    assert.strictEqual(frameworkGeneration(framework({ name: 'my-fw', peerDependencies: { egg: '4' } })), 4);
    assert.strictEqual(frameworkGeneration(framework({ name: 'my-fw', dependencies: { '@eggjs/cluster': '^3' } })), 4);
    // nothing says: the egg it resolves (egg 3 here), else egg 3
    assert.strictEqual(frameworkGeneration(framework({ name: 'my-fw' })), 3);
    assert.strictEqual(frameworkGeneration(path.join(os.tmpdir(), 'no-such-framework-dir')), 3);
  });

  it('the master: the ESM entry is egg 4, else the framework tells; workers run from its scripts', () => {
    const egg3 = masterDialect({ framework: getFilepath('egg') });
    const egg4 = masterDialect({ framework: getFilepath('egg4') });
    const esm = masterDialect({ framework: getFilepath('egg') }, 'esm');
    assert.strictEqual(egg3.generation, 3);
    assert.strictEqual(egg4.generation, 4);
    assert.strictEqual(esm.generation, 4);
    const root = path.join(__dirname, '..');
    assert.strictEqual(egg3.workerScript('app'), path.join(root, 'lib/app_worker.js'));
    assert.strictEqual(egg4.workerScript('agent'), path.join(root, 'dist/commonjs/agent_worker.js'));
    assert.strictEqual(esm.workerScript('app'), path.join(root, 'dist/esm/app_worker.js'));
    for (const kind of [ 'app', 'agent' ]) {
      for (const dialect of [ egg3, egg4, esm ]) assert(fs.existsSync(dialect.workerScript(kind)), dialect.workerScript(kind));
    }
  });

  it('a worker: the script it was started with', () => {
    assert.strictEqual(workerDialect('/x/node_modules/egg-cluster/lib/app_worker.js').generation, 3);
    const cjs = workerDialect('/x/node_modules/@eggjs/cluster/dist/commonjs/app_worker.js');
    assert.strictEqual(cjs.generation, 4);
    assert.strictEqual(cjs.loadsWithImport, false);
    const esm = workerDialect('/x/node_modules/@eggjs/cluster/dist/esm/agent_worker.js');
    assert.strictEqual(esm.loadsWithImport, true);
    assert.strictEqual(workerDialect('').generation, 3);
  });

  it('keeps each generation\'s lines', () => {
    const egg3 = masterDialect({ framework: getFilepath('egg') });
    const egg4 = masterDialect({ framework: getFilepath('egg4') });
    assert.strictEqual(egg3.banner('egg'), '[master] =================== egg start =====================');
    assert.strictEqual(egg4.banner('egg'), '[master] =================== egg start 🥚🥚🥚🥚 =====================');
    assert.strictEqual(egg3.reloadLine(4), '[master] reload workers...');
    assert.strictEqual(egg4.reloadLine(4), '[master] reload 4 workers...');
    assert.strictEqual(egg3.deathCode(1), undefined);
    assert.strictEqual(egg4.deathCode(1), 1);
    assert.strictEqual(egg3.receiverWorkerIdFirst, false);
    assert.strictEqual(egg4.receiverWorkerIdFirst, true);
  });
});
