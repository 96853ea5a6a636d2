'use strict';

// The short form of the fault suite (test/chaos/run.js has the long one: npm run test:chaos):
// an egg 3 app with an agent and 4 app workers under a steady message load, a few dozen
// SIGKILLs of app workers and the agent, then every check of the long form.

const assert = require('assert');
const { runChaos, printFigures } = require('./chaos/run');

describe('test/chaos.test.js', function() {
  this.timeout(180000);

  it('survives a short kill storm under load: workers back, every message once and in order, no leak, no orphan', async () => {
    const lines = [];
    const figures = await runChaos({
      kills: Number(process.env.CHAOS_KILLS || 16),
      workers: 4,
      port: 17531,
      agentKillRatio: 0.2,
      killInterval: 1250,
      recoverTimeout: 60000,
      log: line => lines.push(line),
    });
    printFigures(figures, line => console.log(`      ${line}`));
    assert.deepStrictEqual(figures.failures, [], lines.join('\n'));
    assert(figures.killsSurvived >= 10, `${figures.killsSurvived} kills`);
    assert(figures.messagesChecked > 1000, `${figures.messagesChecked} messages checked`);
  });
});
