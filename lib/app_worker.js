'use strict';

/**
 * An app worker: a cluster worker of the master (cluster.worker exists), started as
 *   node [execArgv] <dir>/lib/app_worker.js '<options JSON>'
 * It boots the framework's Application, tells the master its port (`realport`), and when the
 * app is ready creates the http(s) server and listens: on the app port (or unix path), or on
 * the stickyWorkerPort in sticky mode, where the master hands it connections. The master
 * counts it as started when the cluster 'listening' event arrives.
 * It exits on SIGTERM (code 0, after app.close()), or with code 1 when the app fails to
 * start, times out starting, or its server fails to listen.
 */

const options = JSON.parse(process.argv[2]);
for (const mod of options.require || []) require(mod);

const os = require('os');
const fs = require('fs');
const cluster = require('cluster');
const debug = require('util').debuglog('egg-cluster:app_worker');
const { EggConsoleLogger } = require('egg-logger');
const { graceful } = require('graceful-process');

// the longest delay setTimeout accepts
const MAX_TIMER_MS = 2 ** 31 - 1;

// SO_REUSEPORT load balancing exists on these platforms only
const REUSE_PORT_PLATFORMS = [ 'linux', 'freebsd', 'sunos', 'aix' ];

const consoleLogger = new EggConsoleLogger({ level: process.env.EGG_APP_WORKER_LOGGER_LEVEL });
const { Application } = require(options.framework);

debug('new Application with options %j', options);
let app;
try {
  app = new Application(options);
} catch (err) {
  consoleLogger.error(err);
  throw err;
}

const clusterConfig = app.config.cluster || {};
const listenConfig = clusterConfig.listen || {};
const httpsOptions = Object.assign({}, clusterConfig.https, options.https);
const port = options.port = options.port || listenConfig.port;
const debugPort = options.debugPort;
const protocol = httpsOptions.key && httpsOptions.cert ? 'https' : 'http';

let reusePort = options.reusePort = options.reusePort || listenConfig.reusePort;
if (reusePort && !REUSE_PORT_PLATFORMS.includes(os.platform())) {
  reusePort = options.reusePort = false;
  debug('platform %s is not supported currently, set reusePort to false', os.platform());
}

process.send({ to: 'master', action: 'realport', data: { port, protocol } });

// SIGTERM runs graceful-process's exit path (app.close()) with exit code 1
function exitProcess() {
  process.exitCode = 1;
  process.kill(process.pid);
}

function onStartTimeout() {
  consoleLogger.error('[app_worker] start timeout, exiting with code:1');
  exitProcess();
}
app.once('startTimeout', onStartTimeout);

app.ready(err => {
  if (err) {
    consoleLogger.error(err);
    consoleLogger.error('[app_worker] start error, exiting with code:1');
    exitProcess();
    return;
  }
  app.removeListener('startTimeout', onStartTimeout);
  startServer();
});

function createServer() {
  if (protocol === 'https') {
    const tlsOptions = Object.assign({}, httpsOptions, {
      key: fs.readFileSync(httpsOptions.key),
      cert: fs.readFileSync(httpsOptions.cert),
      ca: httpsOptions.ca && fs.readFileSync(httpsOptions.ca),
    });
    const server = require('https').createServer(tlsOptions, app.callback());
    // the debug port always speaks plain http
    const debugServer = debugPort ? require('http').createServer(app.callback()) : null;
    return { server, debugServer };
  }
  const server = require('http').createServer(app.callback());
  return { server, debugServer: debugPort ? server : null };
}

function startServer() {
  const { server, debugServer } = createServer();

  server.once('error', err => {
    consoleLogger.error('[app_worker] server got error: %s, code: %s', err.message, err.code);
    exitProcess();
  });

  app.emit('server', server);

  if (options.sticky) {
    server.listen(options.stickyWorkerPort, '127.0.0.1');
    // the master accepts on the app port and sends us the connections of our clients
    process.on('message', (message, connection) => {
      if (message !== 'sticky-session:connection' || !connection) return;
      server.emit('connection', connection);
      connection.resume();
    });
  } else {
    if (listenConfig.path) {
      server.listen(listenConfig.path);
    } else if (typeof port !== 'number') {
      consoleLogger.error('[app_worker] port should be number, but got %s(%s)', port, typeof port);
      exitProcess();
      return;
    } else if (reusePort) {
      const listenOptions = { port, reusePort };
      if (listenConfig.hostname) listenOptions.host = listenConfig.hostname;
      debug('listen options %j', listenOptions);
      server.listen(listenOptions);
    } else {
      const args = listenConfig.hostname ? [ port, listenConfig.hostname ] : [ port ];
      debug('listen options %s', args);
      server.listen(...args);
    }
    if (debugServer) {
      debug('listen on debug port: %s', debugPort);
      debugServer.listen(debugPort);
    }
  }

  server.once('listening', () => {
    const address = server.address() || { port };
    if (reusePort) {
      // a reusePort server bypasses the cluster protocol: the master hears of it from us
      cluster.worker.send({ to: 'master', action: 'reuse-port-listening', data: address, reusePort });
      return;
    }
    process.send({ to: 'master', action: 'listening', data: address, reusePort });
  });
}

graceful({
  logger: consoleLogger,
  label: 'app_worker',
  beforeExit: () => app.close(),
  // egg-cluster's graceful-process 1.x waited for app.close() as long as it took (the master
  // SIGKILLs after its close timeout); 2.x gives up after GRACEFUL_TIMEOUT, default 5s
  timeout: Number(process.env.GRACEFUL_TIMEOUT) || MAX_TIMER_MS,
});
