'use strict';

// The chaos suite's master: startCluster from this repository, forked by the driver with an
// IPC channel (the driver is the master's parent, as egg-mock or egg-scripts would be).
// argv[2]: startCluster options as JSON. Run with --expose-gc so that the driver can ask for
// a collection before it reads the master's RSS ({action: 'chaos-gc'} from the parent).
// {action: 'chaos-round', data: k} from the parent makes the master send round k to the app
// workers and to the agent in one tick (the workers check that no answer overtakes it).

process.on('message', msg => {
  if (msg && msg.action === 'chaos-gc' && typeof global.gc === 'function') global.gc();
});

const { Master } = require('../..');

const master = new Master(JSON.parse(process.argv[2]));
master.ready();
master.on('chaos-round', k => {
  master.messenger.sendToApp('chaos-round', k);
  master.messenger.sendToAgent('chaos-round', k);
});
