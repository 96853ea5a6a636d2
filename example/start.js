'use strict';

// `npm start`: runs this egg 3 app in cluster mode under egg-cluster-rs, in the
// foreground. Ctrl-C closes app workers, then the agent, then the master.
const path = require('path');
const { startCluster } = require('..');

startCluster({
  baseDir: __dirname,
  framework: path.dirname(require.resolve('egg')),
  workers: Number(process.env.WORKERS || 2),
  port: Number(process.env.PORT || 7001),
});
