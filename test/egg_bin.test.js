'use strict';

const path = require('path');
const assert = require('assert');
const { once } = require('events');
const coffee = require('coffee');
const request = require('supertest');
const { getFilepath, waitFor, sleep } = require('./utils');

const EGG_BIN = path.join(path.dirname(require.resolve('egg-bin/package.json')), 'dist/bin/cli.js');
const PORT = 17894;

describe('test/egg_bin.test.js', () => {
  it('egg-bin dev starts the app through our startCluster and stops on SIGTERM', async () => {
    const dev = coffee.fork(EGG_BIN, [ 'dev', `--framework=${getFilepath('egg')}`, `--port=${PORT}` ], {
      cwd: getFilepath('apps/master-worker-started'),
    });
    dev.end();
    try {
      await waitFor(() => new RegExp(`egg started on http://127\\.0\\.0\\.1:${PORT}`).test(dev.stdout), 45000);
      await request(`http://127.0.0.1:${PORT}`).get('/').expect(200, 'hi egg');
    } finally {
      dev.proc.kill('SIGTERM');
      await once(dev.proc, 'exit');
    }
    await sleep(500);
    // egg-bin dev sets NODE_ENV=development (debug-level lines hidden) and EGG_MASTER_CLOSE_TIMEOUT=1000
    assert.doesNotMatch(dev.stdout, /start with clusterPort/);
    assert.match(dev.stdout, /\[master\] wait 1000ms/);
    assert.match(dev.stdout, /\[master\] exit with code:0/);
  });
});
