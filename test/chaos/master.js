'use strict';

// The chaos suite's master: startCluster from this repository, forked by the driver with an
// IPC channel (the driver is the master's parent, as egg-mock or egg-scripts would be).
// argv[2]: startCluster options as JSON. Run with --expose-gc so that the driver can ask for
// a collection before it reads the master's RSS ({action: 'chaos-gc'} from the parent).

process.on('message', msg => {
  if (msg && msg.action === 'chaos-gc' && typeof global.gc === 'function') global.gc();
});

require('../..').startCluster(JSON.parse(process.argv[2]));
