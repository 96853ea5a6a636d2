'use strict';

// Run by lib/framework.js in a child node process: `node framework_probe.js <framework dir>`.
// Requires the framework and answers on fd 3 with one JSON object: whether it exports
// Application and Agent, or the error its require threw.
const fs = require('fs');

let verdict;
try {
  const framework = require(process.argv[2]);
  verdict = { application: !!(framework && framework.Application), agent: !!(framework && framework.Agent) };
} catch (err) {
  const e = err instanceof Error ? err : new Error(String(err));
  verdict = { error: { name: e.name, message: e.message, code: e.code, stack: e.stack } };
}
fs.writeSync(3, JSON.stringify(verdict));
// the framework may have left timers or sockets behind: the answer is all we came for
process.exit(0);
