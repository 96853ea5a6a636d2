'use strict';

const fs = require('fs');
const net = require('net');
const assert = require('assert');
const { once } = require('events');
const coffee = require('coffee');
const mm = require('egg-mock');
const request = require('supertest');
const { cluster, sleep, waitFor, getFilepath } = require('./utils');

describe('test/app_worker.test.js', () => {
  let app;

  afterEach(mm.restore);
  afterEach(() => app && app.close());

  it('emits `server` on the app before listening', async () => {
    app = cluster('apps/app-server');
    await app.ready();
    await request(`http://127.0.0.1:${app.port}`).get('/').expect(200, 'true');
  });

  describe('start failures', () => {
    it('exits 1 when the app fails to boot, closing the app first', async () => {
      app = cluster('apps/app-start-error', {
        opt: { env: Object.assign({}, process.env, { EGG_APP_WORKER_LOGGER_LEVEL: 'INFO' }) },
      });
      await app.expect('code', 1)
        .expect('stderr', /app boot failed on purpose/)
        .expect('stderr', /\[app_worker\] start error, exiting with code:1/)
        .expect('stdout', /\[app_worker\] beforeExit success/)
        // graceful-process's SIGTERM path exits 0, whatever process.exitCode said (as with egg-cluster)
        .expect('stdout', /\[app_worker\] exit with code:0/)
        .expect('stderr', /nodejs\.AppWorkerDiedError: \[master\] app_worker#1:\d+ died \(code: \w+, signal: null, suicide: false, state: dead\), current workers: \[\d+\]/)
        .expect('stderr', /\[master\] app_worker#1:\d+ start fail, exiting with code:1/)
        .expect('stderr', /\[master\] exit with code:1/)
        .end();
    });

    it('does not refork an app worker that dies while starting', async () => {
      mm.env('default');
      app = cluster('apps/app-start-error');
      await app.expect('code', 1)
        .expect('stdout', /\[cfork:master:\d+\] don't fork, because worker:\d+ will be kill soon/)
        .notExpect('stderr', /new worker:\d+ fork/)
        .end();
    });

    it('exits 1 when the app throws while loading', async () => {
      app = cluster('apps/worker-die');
      await app.expect('code', 1)
        .expect('stderr', /app worker throw/)
        .expect('stderr', /\[master\] app_worker#1:\d+ start fail, exiting with code:1/)
        .end();
    });

    it('exits 1 when the app does not start within workerStartTimeout', async () => {
      app = cluster('apps/app-start-timeout');
      await app.expect('code', 1)
        .expect('stderr', /\[app_worker\] start timeout, exiting with code:1/)
        .expect('stderr', /nodejs\.AppWorkerDiedError: \[master\] app_worker#1:\d+ died/)
        .expect('stderr', /\[master\] app_worker#1:\d+ start fail, exiting with code:1/)
        .end();
    });

    it('exits 1 when the app port is taken', async () => {
      const blocker = net.createServer().listen(0);
      await once(blocker, 'listening');
      try {
        app = cluster('apps/app-server', { port: blocker.address().port });
        await app.expect('code', 1)
          .expect('stderr', new RegExp(`\\[app_worker\\] server got error: bind EADDRINUSE null:${blocker.address().port}, code: EADDRINUSE`))
          .end();
      } finally {
        blocker.close();
      }
    });

    it('exits 1 when no port is configured', async () => {
      app = null;
      const baseDir = getFilepath('apps/app-listen-without-port');
      await coffee.fork(getFilepath('start-cluster.js'), [ JSON.stringify({ baseDir, workers: 1 }) ])
        .expect('code', 1)
        .expect('stderr', /\[app_worker\] port should be number, but got null\(object\)/)
        .expect('stderr', /\[master\] app_worker#1:\d+ start fail, exiting with code:1/)
        .end();
    });
  });

  describe('listen', () => {
    it('does not count a server on another port as the app starting', async () => {
      app = cluster('apps/other-port');
      await app.expect('code', 0)
        .expect('stdout', /\[master\] app_worker#1:\d+ listening on {"addressType":4,"address":null,"port":17899}/)
        .notExpect('stdout', /started at 17899/)
        .end();
    });

    it('uses config.cluster.listen.port when no port option is given', async () => {
      app = null;
      const baseDir = getFilepath('apps/app-listen-port');
      const proc = coffee.fork(getFilepath('start-cluster.js'), [ JSON.stringify({ baseDir, workers: 1 }) ]);
      try {
        await waitFor(() => /egg started on http:\/\/127\.0\.0\.1:17010/.test(proc.stdout));
        await request('http://127.0.0.1:17010').get('/').expect(200, 'done');
        await request('http://localhost:17010').get('/port').expect(200, '17010');
      } finally {
        proc.proc.kill('SIGTERM');
        await once(proc.proc, 'exit');
      }
    });

    it('listens on config.cluster.listen.hostname only', async () => {
      app = null;
      const baseDir = getFilepath('apps/app-listen-hostname');
      const proc = coffee.fork(getFilepath('start-cluster.js'), [ JSON.stringify({ baseDir, workers: 1 }) ]);
      try {
        await waitFor(() => /egg started on http:\/\/127\.0\.0\.1:17010/.test(proc.stdout));
        assert.match(proc.stdout, /listening on {"addressType":4,"address":"127\.0\.0\.1","port":17010}/);
        await request('http://127.0.0.1:17010').get('/').expect(200, 'done');
      } finally {
        proc.proc.kill('SIGTERM');
        await once(proc.proc, 'exit');
      }
    });

    it('listens with config.cluster.listen.reusePort', async () => {
      app = null;
      const baseDir = getFilepath('apps/app-listen-reuse-port');
      const proc = coffee.fork(getFilepath('start-cluster.js'), [ JSON.stringify({ baseDir, workers: 2 }) ]);
      try {
        await waitFor(() => /egg started on http:\/\/.+?:17011/.test(proc.stdout));
        assert.strictEqual(proc.stdout.match(/started at 17011/g).length, 2);
        await request('http://127.0.0.1:17011').get('/').expect(200, 'done');
        await request('http://127.0.0.1:17011').get('/port').expect(200, '17011');
      } finally {
        proc.proc.kill('SIGTERM');
        await once(proc.proc, 'exit');
      }
    });

    it('serves plain http on debugPort beside https', async () => {
      const debugPort = 17898;
      app = cluster('apps/https-server', { debugPort });
      await app.expect('code', 0)
        .expect('stdout', /egg started on https:\/\/127\.0\.0\.1:\d+/)
        .expect('stdout', new RegExp(`egg started on http://127\\.0\\.0\\.1:${debugPort}\\n`))
        .end();
      await request(`http://127.0.0.1:${debugPort}`).get('/').expect(200, 'done');
    });

    it('listens on config.cluster.listen.path', async () => {
      const sockFile = getFilepath('apps/app-listen-path/my.sock');
      fs.rmSync(sockFile, { force: true });
      app = cluster('apps/app-listen-path');
      await app.expect('code', 0).expect('stdout', new RegExp(`egg started on ${sockFile} \\(`)).end();
      const body = await new Promise((resolve, reject) => {
        require('http').get({ socketPath: sockFile, path: '/' }, res => {
          let text = '';
          res.on('data', chunk => { text += chunk; });
          res.on('end', () => resolve(text));
        }).on('error', reject);
      });
      assert.strictEqual(body, 'done');
    });
  });

  describe('refork', () => {
    it('reforks an app worker that exits in production', async () => {
      mm.env('default');
      app = cluster('apps/app-die');
      await app.ready();
      await request(`http://127.0.0.1:${app.port}`).get('/exit').expect(200);
      await sleep(5000);
      assert.match(app.stdout, /\[master\] app_worker#1:\d+ disconnect, suicide: false, state: disconnected, current workers: /);
      assert.match(app.stderr, /\[cfork:master:\d+\] new worker:\d+ fork \(state: none\)/);
      assert.match(app.stderr, /nodejs\.AppWorkerDiedError: \[master\] app_worker#1:\d+ died/);
      assert.match(app.stdout, /\[master\] app_worker#2:\d+ started at \d+, remain 0/);
      await request(`http://127.0.0.1:${app.port}`).get('/').expect(200, 'worker 2');
      // the new worker takes the place, and cfork's index, of the one that died
      await request(`http://127.0.0.1:${app.port}`).get('/cfork-env').expect(200, '0/1');

      await request(`http://127.0.0.1:${app.port}`).get('/exit').expect(200);
      await sleep(5000);
      assert.match(app.stdout, /\[master\] app_worker#3:\d+ started at \d+/);
    });

    it('does not refork in local env, and keeps the master running', async () => {
      mm.env('local');
      app = cluster('apps/app-die');
      await app.ready();
      await request(`http://127.0.0.1:${app.port}`).get('/kill?signal=SIGKILL').expect(200);
      await sleep(3000);
      assert.match(app.stdout, /\[master\] app_worker#1:\d+ disconnect/);
      assert.match(app.stderr, /\[cfork:master:\d+\] don't fork new work \(refork: false\)/);
      assert.match(app.stderr, /app_worker#1:\d+ died \(code: \w+, signal: SIGKILL/);
      assert.strictEqual(app.proc.exitCode, null);
    });

    it('tells the parent app-worker-died', async () => {
      mm.env('local');
      app = cluster('apps/app-die');
      let died = false;
      setImmediate(() => app.proc.on('message', msg => {
        if (msg && msg.action === 'app-worker-died') died = true;
      }));
      await app.ready();
      await request(`http://127.0.0.1:${app.port}`).get('/exit').expect(200);
      await sleep(2000);
      assert.strictEqual(died, true);
    });
  });
});
