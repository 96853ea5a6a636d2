// routeDecision: the core's router without a core, as a worker_threads master
// (lib/thread_table.js) asks it, with thread ids where process mode has pids.

import test from 'ava';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { routeDecision } = require('../binding.js');

const MASTER = 100;
const AGENT = 1;
const decide = (from, msg, { agent = AGENT, workerIdFirst = false } = {}) =>
  routeDecision(from, JSON.stringify(msg), MASTER, agent, workerIdFirst);

test('without `to`: agent → every app, app → agent, parent → master, master → nowhere', t => {
  t.like(decide('agent', {}), { to: 'app', destination: 'apps' });
  t.like(decide('app', {}), { to: 'agent', destination: 'agent' });
  t.like(decide('parent', {}), { to: 'master', destination: 'master' });
  t.like(decide('master', {}), { destination: 'nowhere' });
  t.is(decide('master', {}).to, undefined);
});

test('a receiver id names the master, the agent, or one app worker', t => {
  t.like(decide('app', { receiverPid: '100' }), { to: 'master', destination: 'master' });
  t.like(decide('app', { receiverPid: '1', to: 'app' }), { to: 'agent', destination: 'agent' });
  t.like(decide('agent', { receiverPid: '3' }), { to: 'app', destination: 'app', receiver: 3 });
  // without an agent, its id is an app worker's
  t.like(decide('app', { receiverPid: '1' }, { agent: null }), { to: 'app', destination: 'app', receiver: 1 });
});

test("egg 4's receiverWorkerId ?? receiverPid when asked, receiverPid first otherwise", t => {
  const both = { receiverPid: '3', receiverWorkerId: '1' };
  t.like(decide('app', both), { destination: 'app', receiver: 3 });
  t.like(decide('app', both, { workerIdFirst: true }), { to: 'agent', destination: 'agent' });
});

test('an unknown `to` goes nowhere and is not written back', t => {
  const decision = decide('app', { to: 'elsewhere' });
  t.is(decision.destination, 'nowhere');
  t.is(decision.to, undefined);
});

test('a bad sender or envelope is an error with a code, never a crash', t => {
  t.throws(() => routeDecision('nobody', '{}', MASTER, AGENT), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => routeDecision('app', '{"to":', MASTER, AGENT), { code: 'ERR_INVALID_ARG_VALUE' });
});
