'use strict';

const assert = require('assert');
const path = require('path');
const { spawnSync } = require('child_process');

const emit = path.join(__dirname, 'fixtures/logger/emit.js');

// the same calls through both loggers, in child processes; dates, line numbers in stacks and
// column positions are the only parts allowed to differ
function run(impl, level, env) {
  const res = spawnSync(process.execPath, [ emit, impl, level || '' ].filter(Boolean), {
    env: { ...process.env, FORCE_COLOR: undefined, EGG_LOG: undefined, ...env },
    encoding: 'utf8',
  });
  assert.strictEqual(res.status, 0, res.stderr);
  const norm = s => s
    .replace(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}/g, '<date>')
    .replace(/(<date> [A-Z]+) \d+ /g, '$1 <pid> ')
    .replace(/pid: \d+/g, 'pid: <pid>')
    .replace(/emit\.js:\d+:\d+/g, 'emit.js:<line>')
    .replace(/\n {4}at .*node:internal.*/g, '');
  return { stdout: norm(res.stdout), stderr: norm(res.stderr) };
}

function cleanEnv(env) {
  const out = {};
  for (const [ k, v ] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

describe('test/console_logger.test.js (the master logger prints what egg-logger prints)', () => {
  const cases = [
    [ 'default level (INFO), no colours', undefined, {}],
    [ 'DEBUG level', 'DEBUG', {}],
    [ 'WARN level', 'WARN', {}],
    [ 'NONE level', 'NONE', {}],
    [ 'EGG_LOG overrides the level', 'INFO', { EGG_LOG: 'ERROR' }],
    [ 'FORCE_COLOR=1 colours as chalk does', 'DEBUG', { FORCE_COLOR: '1' }],
    [ 'FORCE_COLOR=0 turns colours off', 'INFO', { FORCE_COLOR: '0' }],
  ];
  for (const [ title, level, env ] of cases) {
    it(title, () => {
      const ours = run('ours', level, cleanEnv(env));
      const theirs = run('egg-logger', level, cleanEnv(env));
      assert.strictEqual(ours.stdout, theirs.stdout);
      assert.strictEqual(ours.stderr, theirs.stderr);
      if (level !== 'NONE') assert(ours.stdout.length + ours.stderr.length > 0, 'something was logged');
    });
  }

  it('logDate() is utility.logDate(): local time, zero padded', () => {
    const { logDate } = require('../lib/console_logger');
    const d = new Date(2026, 0, 2, 3, 4, 5, 6);
    assert.strictEqual(logDate(',', d), '2026-01-02 03:04:05,006');
    assert.strictEqual(logDate(undefined, new Date(2026, 10, 26, 17, 34, 30, 123)), '2026-11-26 17:34:30.123');
  });

  it('the master does not load egg, egg-logger or chalk', () => {
    const probe = `
      const { startCluster } = require(${JSON.stringify(path.join(__dirname, '..'))});
      const heavy = () => Object.keys(require.cache).filter(f => /node_modules\\/(egg|egg-logger|chalk|egg-core|koa)\\//.test(f));
      startCluster({ baseDir: ${JSON.stringify(path.join(__dirname, '../example'))}, workers: 1, port: 0 }, err => {
        console.log('HEAVY ' + JSON.stringify(heavy()));
        process.exit(err ? 1 : 0);
      });`;
    const res = spawnSync(process.execPath, [ '-e', probe ], { encoding: 'utf8', timeout: 60000, env: { ...process.env, FORCE_COLOR: undefined } });
    const line = res.stdout.split('\n').find(l => l.startsWith('HEAVY '));
    assert(line, res.stdout + res.stderr);
    assert.deepStrictEqual(JSON.parse(line.slice(6)), []);
  });
});
