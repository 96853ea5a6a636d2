'use strict';

/**
 * What happens when an app worker disconnects or exits, as methods of Master: cfork's refork
 * rules and its `[cfork:master]` lines, our backoff for a slot that keeps dying before it
 * listens, egg-cluster's `AppWorkerDiedError`, and exit 1 for a death during startup.
 */

const util = require('util');
const { logDate } = require('../console_logger');

class AppWorkerDeaths {
  onAppDisconnect(info) {
    const worker = this.appWorkers.get(info.id);
    if (!worker) return;
    this.reforkPolicy.disconnectCount++;

    // cfork: refork as soon as a worker disconnects unexpectedly
    const print = worker.disableRefork ? console.info : console.error;
    print(`[%s] [cfork:master:%s] worker:%s disconnect (exitedAfterDisconnect: %s, state: %s, isDead: %s, worker.disableRefork: %s${this.dialect.cforkWorkerTail})`,
      logDate(), process.pid, worker.pid, worker.exitedAfterDisconnect, worker.state, worker.isDead, worker.disableRefork);
    if (worker.isDead) {
      print('[%s] [cfork:master:%s] don\'t fork, because worker:%s exit event emit before disconnect',
        logDate(), process.pid, worker.pid);
    } else if (worker.disableRefork) {
      print('[%s] [cfork:master:%s] don\'t fork, because worker:%s will be kill soon',
        logDate(), process.pid, worker.pid);
    } else {
      worker.reforkedOnDisconnect = true;
      this.refork(worker, print);
    }

    const disconnectLog = this.dialect.disconnectLevel === 'info' ? this.logger.info.bind(this.logger) : this.log.bind(this);
    disconnectLog('[master] app_worker#%s:%s disconnect, suicide: %s, state: %s, current workers: %j',
      worker.id, worker.pid, worker.exitedAfterDisconnect, worker.state, this.clusterWorkerIds());

    if (worker.killSignal) this.signalAppWorker(worker, worker.killSignal);
    worker.events.emit('disconnect');
  }

  onAppProcessExit(info, code, signal) {
    const worker = this.appWorkers.get(info.id);
    if (!worker) return;

    const print = worker.disableRefork ? console.info : console.error;
    const isExpected = worker.reforkedOnDisconnect;
    print(`[%s] [cfork:master:%s] worker:%s exit (code: %s, exitedAfterDisconnect: %s, state: %s, isDead: %s, isExpected: %s, worker.disableRefork: %s${this.dialect.cforkWorkerTail})`,
      logDate(), process.pid, worker.pid, code, worker.exitedAfterDisconnect, worker.state, true,
      isExpected, worker.disableRefork);
    if (!isExpected && worker.disableRefork && worker.isRefork && !worker.started &&
      !worker.isDevReload && !worker.exitedAfterDisconnect && this.isAllWorkerStarted &&
      this.isProduction && !this.closed) {
      this.reforkAfterBackoff(worker);
    }
    if (!isExpected && !worker.disableRefork) {
      this.reforkPolicy.unexpectedCount++;
      this.refork(worker, print);
      const err = new Error(util.format(`worker:%s died unexpected (code: %s, signal: %s, exitedAfterDisconnect: %s, state: %s${this.dialect.cforkUnexpectedTail})`,
        worker.pid, code, signal, worker.exitedAfterDisconnect, worker.state));
      err.name = 'WorkerDiedUnexpectedError';
      console.error('[%s] [cfork:master:%s] (total %d disconnect, %d unexpected exit) %s',
        logDate(), process.pid, this.reforkPolicy.disconnectCount, this.reforkPolicy.unexpectedCount, err.stack);
    }

    this.emit('app-exit', { workerId: worker.pid, code, signal });
    worker.settle();
    worker.events.emit('exit', code, signal);
    if (this.closed) this.appWorkers.delete(worker.id);
  }

  /**
   * A reforked worker died before it listened. egg-cluster gives up on the slot (eggjs/egg#4538);
   * we fork it again, backing off exponentially while the slot keeps crashing.
   * @param {AppWorker} worker - the worker that died
   */
  reforkAfterBackoff(worker) {
    const { failures, delay } = this.reforkPolicy.slotFailed(worker.workerEnv);
    this.logger.warn('[master] app_worker#%s:%s died before listening, %s failure(s) in a row, refork in %sms',
      worker.id, worker.pid, failures, delay);
    const timer = setTimeout(() => {
      this.backoffTimers.delete(timer);
      if (this.closed) return;
      this.refork(worker, console.error);
    }, delay);
    this.backoffTimers.add(timer);
  }

  refork(worker, print) {
    if (this.closed || !this.reforkPolicy.allow()) {
      print(`[%s] [cfork:master:%s] don't fork new work (refork: %s${this.dialect.cforkReforkTail(this.reforkPolicy.times.length)})`,
        logDate(), process.pid, this.isProduction);
      return;
    }
    const newWorker = this.forkAppWorker(worker.workerEnv);
    if (newWorker) {
      newWorker.isRefork = true;
      print(`[%s] [cfork:master:%s] new worker:%s fork (state: %s${this.dialect.cforkReforkTail(this.reforkPolicy.times.length)})`,
        logDate(), process.pid, newWorker.pid, newWorker.state);
    }
  }

  /**
   * An app worker died: log it, tell the agent and the parent; a death during startup exits.
   * @param {Object} data - { workerId, code, signal }
   */
  onAppExit(data) {
    if (this.closed) return;
    const worker = this.findAppWorker(data.workerId);
    if (!worker) return;

    // a worker a reload replaced, or a dev reload's, was expected to go
    if (!worker.isDevReload && !worker.retired) {
      // egg-cluster prints cluster.Worker#exitCode here, a property Node never sets; egg 4 the code
      const code = this.threadMode ? this.dialect.threadDeathCode(data.code) : this.dialect.deathCode(data.code);
      const message = util.format(
        '[master] app_worker#%s:%s died (code: %s, signal: %s, suicide: %s, state: %s), current workers: %j',
        worker.id, worker.pid, code, data.signal, worker.exitedAfterDisconnect, worker.state,
        this.managedWorkerPids());
      if (this.options.isDebug && data.signal === 'SIGKILL') {
        this.logger.error(message);
        this.logger.error('[master] worker kill by debugger, exiting...');
        setTimeout(() => this.close(), 10);
      } else {
        const err = new Error(message);
        err.name = 'AppWorkerDiedError';
        this.logger.error(err);
      }
    }

    this.appWorkers.delete(worker.id);
    this.messenger.send({ action: 'egg-pids', to: 'agent', data: this.listeningWorkerPids() });

    if (worker.retired) return;
    if (this.isAllWorkerStarted) {
      this.messenger.send({ action: 'app-worker-died', to: 'parent' });
    } else {
      this.logger.error('[master] app_worker#%s:%s start fail, exiting with code:1', worker.id, worker.pid);
      process.exit(1);
    }
  }
}

module.exports = { AppWorkerDeaths };
