'use strict';

// Run by lib/framework.js in a child node process: `node framework_probe.js <framework dir>`.
// Requires the framework and answers on fd 3 with one JSON object: whether it exports
// Application and Agent, or the error its require threw.
const fs = require('fs');
const { verdictOf } = require('./framework');

let answer;
try {
  answer = verdictOf(require(process.argv[2]));
} catch (err) {
  answer = verdictOf(undefined, err);
}
fs.writeSync(3, answer);
// the framework may have left timers or sockets behind: the answer is all we came for
process.exit(0);
