'use strict';

/**
 * egg-development's reload, as methods of Master: the `reload-worker` event replaces every app
 * worker, the first new one listening before the first old one goes.
 */

class DevReload {
  /**
   * Development only (egg-development's file watcher asks for it): replace every app worker,
   * one new worker listening before the first old one goes.
   */
  onReload() {
    this.log(this.dialect.reloadLine(this.options.workers));
    for (const worker of this.appWorkers.values()) worker.isDevReload = true;
    this.reloadAppWorkers();
  }

  reloadAppWorkers() {
    if (!this.appArgs) return;
    if (this.reloading) {
      this.reloadPending = true;
      return;
    }
    this.reloading = true;
    const alive = Array.from(this.appWorkers.values()).filter(w => w.state !== 'disconnected' && !w.isDead);
    const first = alive[0];
    const replacement = this.forkAppWorker({});
    const done = () => {
      if (first) {
        this.killAppWorker(first, 'SIGTERM');
        setTimeout(() => this.signalAppWorker(first, 'SIGTERM'), 100);
      }
      this.reloading = false;
      if (this.reloadPending) {
        this.reloadPending = false;
        this.reloadAppWorkers();
      }
    };
    if (replacement) {
      replacement.onSettled = done;
    } else {
      done();
    }
    for (const worker of alive.slice(1)) this.killAppWorker(worker, 'SIGTERM');
    for (let i = 1; i < this.options.workers; i++) this.forkAppWorker({});
  }
}

module.exports = { DevReload };
