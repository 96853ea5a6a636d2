'use strict';

const assert = require('assert');
const path = require('path');
const { execFile } = require('child_process');

const ROOT = path.join(__dirname, '..');

describe('test/types.test.js', () => {
  it('a strict TypeScript consumer of index.d.ts compiles with tsc --strict --noEmit', done => {
    const tsc = path.join(ROOT, 'node_modules/.bin/tsc');
    execFile(tsc, [ '-p', path.join(__dirname, 'types'), '--strict', '--noEmit' ], { cwd: ROOT }, (err, stdout, stderr) => {
      assert.ifError(err && new Error(`tsc failed:\n${stdout}${stderr}`));
      assert.strictEqual(stdout.trim(), '');
      done();
    });
  });
});
