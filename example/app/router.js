'use strict';

module.exports = app => {
  const { router, controller } = app;
  router.get('/', controller.home.index);
  router.get('/agent-time', controller.home.agentTime);
  router.get('/ticks', controller.home.ticks);
};
