'use strict';

const assert = require('assert');
const coffee = require('coffee');
const { getFilepath } = require('./utils');

describe('test/master_api.test.js', () => {
  const baseDir = getFilepath('apps/master-worker-started');
  const script = getFilepath('master-events.js');

  it('emits agent-start, realport and app-start, then resolves ready, then close() exits 0', async () => {
    const { stdout } = await coffee.fork(script, [ JSON.stringify({ baseDir, workers: 2, port: 17893 }) ])
      .expect('code', 0)
      .expect('stdout', /event agent-start null/)
      .expect('stdout', /event realport {"port":17893,"protocol":"http"}/)
      .expect('stdout', /event app-start {"workerId":\d+,"address":{"addressType":4,"address":null,"port":17893}}/)
      .expect('stdout', /ready callback: undefined/)
      .expect('stdout', /ready promise resolved, isStarted: true/)
      .expect('stdout', /\[master\] close done, exiting with code:0/)
      // closing: app workers exit (app-exit, as with egg-cluster); the agent is killed quietly
      .notExpect('stdout', /event agent-exit/)
      .end();
    assert.strictEqual(stdout.match(/event app-start/g).length, 2);
    assert.strictEqual(stdout.match(/event app-exit {"workerId":\d+,"code":0,"signal":null}/g).length, 2);
    assert(stdout.indexOf('ready callback') < stdout.indexOf('event app-exit'));
    assert(stdout.indexOf('event agent-start') < stdout.indexOf('event app-start'));
  });

  it('startCluster calls back once the cluster is ready', async () => {
    await coffee.fork(script, [ JSON.stringify({ baseDir, workers: 1, port: 17892, useStartCluster: true }) ])
      .expect('code', 0)
      .expect('stdout', /egg started on http:\/\/127\.0\.0\.1:17892[\s\S]+startCluster callback: undefined/)
      .expect('stdout', /\[master\] master is killed by signal SIGTERM, closing/)
      .end();
  });

  it('throws a clear error for sticky with startMode worker_threads', async () => {
    await coffee.fork(script, [ JSON.stringify({ baseDir, startMode: 'worker_threads', sticky: true }) ])
      .expect('code', 1)
      .expect('stderr', /StartModeOptionError: \[master\] sticky mode is not available with startMode "worker_threads"/)
      .end();
  });
});
