'use strict';

const fs = require('fs');
const { Load } = require('./lib/load');

module.exports = app => {
  // a crash-looping slot on demand: while this file exists, app workers fail to start
  const crashFile = process.env.CHAOS_CRASH_FILE;
  if (crashFile && fs.existsSync(crashFile)) throw new Error(`chaos: ${crashFile} exists, failing to start`);
  app.chaos = new Load(app, 'app');
  app.chaos.install();
};
