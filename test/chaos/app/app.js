'use strict';

const { Load } = require('./lib/load');

module.exports = app => {
  app.chaos = new Load(app, 'app');
  app.chaos.install();
};
