'use strict';

const { Controller } = require('egg');

class HomeController extends Controller {
  async index() {
    this.ctx.body = {
      hello: 'egg-cluster-rs',
      pid: process.pid,
      worker: require('cluster').worker.id,
    };
  }

  // asks the agent for its clock over egg's messenger and waits for the answer
  async agentTime() {
    const { app } = this;
    const reply = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('agent did not answer')), 3000);
      app.messenger.once(`agent-time:${process.pid}`, data => {
        clearTimeout(timer);
        resolve(data);
      });
      app.messenger.sendToAgent('agent-time', { pid: process.pid });
    });
    this.ctx.body = reply;
  }

  async ticks() {
    this.ctx.body = { ticks: this.app.ticks || 0 };
  }
}

module.exports = HomeController;
