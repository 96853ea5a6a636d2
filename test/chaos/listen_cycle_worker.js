'use strict';

// An app worker that listens on argv[2] and closes, `CYCLES` times in a row (each listen right
// after the previous close), then reports to the master how many listens failed and why.
// Node's cluster primary closes a round-robin handle synchronously when its last worker leaves,
// so the next listen on the port always succeeds there.

const net = require('net');
const port = Number(process.argv[2]);
let n = 0;
let errors = 0;
const codes = {};
function cycle() {
  if (n >= Number(process.env.CYCLES || 100)) { process.send({ action: 'cycles', to: 'master', data: { pid: process.pid, n, errors, codes } }); return; }
  n++;
  const server = net.createServer();
  server.once('error', err => { errors++; codes[err.code] = (codes[err.code] || 0) + 1; setImmediate(cycle); });
  server.listen(port, '127.0.0.1', () => server.close(() => setImmediate(cycle)));
}
cycle();
