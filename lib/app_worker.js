'use strict';

/**
 * An app worker: a cluster worker of the master (cluster.worker exists), started as
 *   node [execArgv] <dir>/lib/app_worker.js '<options JSON>'
 * It boots the framework's Application, tells the master its port (`realport`), and when the
 * app is ready creates the http(s) server and listens: on the app port (or unix path), or on
 * the stickyWorkerPort in sticky mode, where the master hands it connections. The master
 * counts it as started when the cluster 'listening' event arrives.
 * It exits on SIGTERM (code 0, after app.close()), or with code 1 when the app fails to
 * start, times out starting, or its server fails to listen. Taken out of the cluster by the
 * master (a reload), it finishes the requests in progress before it closes.
 * With `startMode: 'worker_threads'` it runs as a thread of the master instead, on its own port
 * (lib/master/threads.js); lib/worker_link.js hides the difference.
 */

const options = JSON.parse(process.argv[2]);
const dialect = require('./dialect').workerDialect();
// egg 3 requires them first, from here; egg 4 imports them from baseDir (main below)
if (dialect.bootsSynchronously) for (const mod of options.require || []) require(mod);

const os = require('os');
const fs = require('fs');
const cluster = require('cluster');
const debug = require('util').debuglog(dialect.debugSection('app_worker'));
const { EggConsoleLogger } = require('egg-logger');
const { loadModule } = require('./load_module');
const link = require('./worker_link');

// SO_REUSEPORT load balancing exists on these platforms only
const REUSE_PORT_PLATFORMS = [ 'linux', 'freebsd', 'sunos', 'aix' ];

const consoleLogger = new EggConsoleLogger({ level: process.env.EGG_APP_WORKER_LOGGER_LEVEL });

let app;
// from app.config.cluster and the options: egg 3 reads them as soon as the Application exists,
// egg 4 once it is ready (its config loads in a beforeStart hook)
let listenConfig;
let httpsOptions;
let port;
let protocol;
let reusePort;
const debugPort = options.debugPort;

// the master's own messages from this worker carry its id (pid, or thread id) as senderWorkerId in egg 4
function sendToMaster(action, data) {
  const message = { to: 'master', action, data };
  if (dialect.senderWorkerId) message.senderWorkerId = String(link.workerId);
  link.send(message);
}

function readClusterConfig() {
  const clusterConfig = app.config.cluster || {};
  listenConfig = clusterConfig.listen || {};
  httpsOptions = Object.assign({}, clusterConfig.https, options.https);
  port = options.port = options.port || listenConfig.port;
  if (dialect.setsAppOptionsPort) app.options.port = port;
  protocol = httpsOptions.key && httpsOptions.cert ? 'https' : 'http';

  reusePort = options.reusePort = options.reusePort || listenConfig.reusePort;
  if (reusePort && !REUSE_PORT_PLATFORMS.includes(os.platform())) {
    reusePort = options.reusePort = false;
    debug('platform %s is not supported currently, set reusePort to false', os.platform());
  }
  sendToMaster('realport', { port, protocol });
}

// SIGTERM runs graceful-process's exit path (app.close()) with exit code 1; a thread exits
function exitProcess() {
  link.exitSelf();
}

function onStartTimeout() {
  consoleLogger.error('[app_worker] start timeout, exiting with code:1');
  exitProcess();
}

function boot({ Application }) {
  debug('new Application with options %j', options);
  try {
    app = new Application(options);
  } catch (err) {
    consoleLogger.error(err);
    throw err;
  }
  if (!dialect.realportAfterReady) readClusterConfig();

  app.once('startTimeout', onStartTimeout);
  app.ready(err => {
    if (err) {
      consoleLogger.error(err);
      consoleLogger.error('[app_worker] start error, exiting with code:1');
      exitProcess();
      return;
    }
    app.removeListener('startTimeout', onStartTimeout);
    if (dialect.realportAfterReady) readClusterConfig();
    startServer();
  });

  link.gracefulExit({
    logger: consoleLogger,
    label: 'app_worker',
    beforeExit: () => drained().then(() => app.close()),
    // egg-cluster's graceful-process 1.x waited for app.close() as long as it took (the master
    // SIGKILLs after its close timeout); egg 4's 2.x gives up after GRACEFUL_TIMEOUT, default 5s
    timeout: dialect.gracefulTimeout(),
  });
}

function createServer() {
  if (protocol === 'https') {
    const tlsOptions = Object.assign({}, httpsOptions, {
      key: fs.readFileSync(httpsOptions.key),
      cert: fs.readFileSync(httpsOptions.cert),
      ca: httpsOptions.ca && fs.readFileSync(httpsOptions.ca),
    });
    const server = require('https').createServer(tlsOptions, drainable(app.callback()));
    // the debug port always speaks plain http
    const debugServer = debugPort ? require('http').createServer(app.callback()) : null;
    return { server, debugServer };
  }
  const server = require('http').createServer(drainable(app.callback()));
  return { server, debugServer: debugPort ? server : null };
}

// Once the master has taken this worker out of the cluster (a reload, cluster.Worker#kill) or
// its server closes, it gets no new connection; what it still serves ends after its response
// (`Connection: close`) and an idle keep-alive connection is closed now, so that clients move to
// the other workers.
let draining = false;
const openSockets = new Set();
const activeResponses = new Set();

function drainable(handle) {
  return (req, res) => {
    if (draining) res.shouldKeepAlive = false;
    activeResponses.add(res);
    res.once('close', () => activeResponses.delete(res));
    handle(req, res);
  };
}

function trackSockets(server) {
  server.on('connection', socket => {
    openSockets.add(socket);
    socket.once('close', () => openSockets.delete(socket));
  });
}

// Node's cluster closes the worker's servers first when the master disconnects it; a server's
// close waits for its connections, so the draining starts right there
function drainOnClose(servers) {
  for (const server of new Set(servers)) {
    const close = server.close;
    server.close = function(...args) {
      startDraining(servers);
      return close.apply(this, args);
    };
  }
}

function startDraining(servers) {
  if (draining) return;
  draining = true;
  for (const res of activeResponses) {
    if (!res.headersSent) res.shouldKeepAlive = false;
  }
  for (const server of servers) {
    if (typeof server.closeIdleConnections === 'function') server.closeIdleConnections();
  }
}

// before app.close(): while draining, let the connections in progress finish, at most half the
// master's close timeout (it SIGKILLs after the whole of it)
function drained() {
  if (!draining || openSockets.size === 0) return Promise.resolve();
  const closeTimeout = Number(process.env.EGG_APP_CLOSE_TIMEOUT || process.env.EGG_MASTER_CLOSE_TIMEOUT || 5000);
  const deadline = Date.now() + closeTimeout / 2;
  return new Promise(resolve => {
    const timer = setInterval(() => {
      if (openSockets.size === 0 || Date.now() >= deadline) {
        clearInterval(timer);
        resolve();
      }
    }, 20);
  });
}

function startServer() {
  const { server, debugServer } = createServer();
  trackSockets(server);
  if (debugServer && debugServer !== server) trackSockets(debugServer);
  drainOnClose([ server, debugServer ].filter(Boolean));

  server.once('error', err => {
    consoleLogger.error('[app_worker] server got error: %s, code: %s', err.message, err.code);
    exitProcess();
  });

  app.emit('server', server);

  if (options.sticky && (!dialect.stickyNeedsWorkerPort || options.stickyWorkerPort)) {
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
      consoleLogger.error(`${dialect.appWorkerLabel()} port should be number, but got %s(%s)`, port, typeof port);
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
    if (reusePort && !link.inThread) {
      // a reusePort server bypasses the cluster protocol: the master hears of it from us
      cluster.worker.send({ to: 'master', action: 'reuse-port-listening', data: address, reusePort });
      return;
    }
    if (dialect.workerSendsAppStart) {
      // egg 4: the worker reports its app server itself; a unix socket path is addressType -1
      const data = typeof address === 'string' ? { address, addressType: -1 } : address;
      // after Node's own cluster 'listening' message, which its listener (added when the reply
      // to queryServer came, after this one) sends in this same emit: the master's core marks
      // the worker listening first, and sticky mode counts on it
      process.nextTick(() => sendToMaster('app-start', { address: data, workerId: link.workerId }));
      return;
    }
    link.send({ to: 'master', action: 'listening', data: address, reusePort });
  });
}

if (dialect.bootsSynchronously) {
  boot(require(options.framework));
} else {
  (async () => {
    const load = spec => loadModule(spec, { baseDir: options.baseDir, useImport: dialect.loadsWithImport });
    for (const mod of options.require || []) await load(mod);
    boot(await load(options.framework));
  })();
}
