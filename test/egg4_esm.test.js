'use strict';

// An ESM egg 4 app (`"type": "module"`) started through our ESM entry, as @eggjs/bin and
// @eggjs/scripts start ESM apps: `import { startCluster } from '<cluster package>'`. The master
// speaks egg 4 and forks the workers in dist/esm/, which load egg's ESM build with import().

const path = require('path');
const assert = require('assert');
const { once } = require('events');
const coffee = require('coffee');
const { getFilepath, waitFor, getJSON } = require('./utils');

const get = async port => (await getJSON(port, '/')).body;

describe('test/egg4_esm.test.js', function() {
  this.timeout(120000);

  it('serves an ESM egg 4 app from workers in dist/esm/, started through the ESM entry', async () => {
    const port = 17611;
    const options = {
      baseDir: getFilepath('apps-egg4/esm-app'),
      framework: path.dirname(require.resolve('egg4/package.json')),
      workers: 2,
      port,
    };
    const proc = coffee.fork(getFilepath('esm/start.mjs'), [ JSON.stringify(options) ]);
    try {
      await waitFor(() => /\[esm start\] startCluster resolved/.test(proc.stdout), 60000);
      assert.match(proc.stdout, /\[master\] =================== egg start 🥚🥚🥚🥚 =====================/);
      assert.match(proc.stdout, /\[master\] egg started on http:\/\/127\.0\.0\.1:17611/);
      const pids = new Set();
      for (let i = 0; i < 20 && pids.size < 2; i++) {
        const body = await get(port);
        assert.match(body.script, /[\\/]dist[\\/]esm[\\/]app_worker\.js$/);
        assert.strictEqual(body.port, port);
        pids.add(body.pid);
      }
      assert.strictEqual(pids.size, 2);
    } finally {
      proc.proc.kill('SIGTERM');
      await once(proc.proc, 'exit');
    }
    assert.match(proc.stdout, /\[master\] exit with code:0/);
  });
});
