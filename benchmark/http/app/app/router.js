'use strict';

// hello world, with the answering worker's pid so the driver can count the share of each worker
const PID = String(process.pid);

module.exports = app => {
  app.get('/', ctx => {
    ctx.set('x-pid', PID);
    ctx.body = 'hello world';
  });
};
