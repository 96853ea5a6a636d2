'use strict';

module.exports = app => {
  app.router.get('/', ctx => {
    ctx.body = { pid: process.pid, checker: app.chaos ? app.chaos.summary() : null };
  });
};
