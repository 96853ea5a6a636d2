'use strict';

/**
 * The fault suite (issue #6): a real egg 3 app (test/chaos/app) with an agent and 4 app
 * workers, in production mode (so egg reforks app workers; the master reforks the agent after
 * 1 s), under a steady message load — agent → apps (sendToApp), agent → each app (sendTo),
 * apps → agent (sendToAgent), app → app (sendTo) — while this driver SIGKILLs random app
 * workers and the agent, many times. Then it checks:
 *
 *   - the master is alive and the configured number of workers is back (and serves HTTP);
 *   - every message sent to a worker that stayed alive arrived exactly once and in order per
 *     sender (sequence numbers: receivers report any gap, duplicate or reordering at once; the
 *     tails of the survivors' streams are compared at the end; sendTo streams from seq 0);
 *   - the master's sends of one tick stay one unit: every CHAOS_ROUND_MS (20) the master sends
 *     a round to the apps and the agent in one tick, each answers the other side, and no
 *     answer may reach a worker before the round that caused it;
 *   - no zombies (a child of the master in state Z for more than 2 s);
 *   - the master's open fd count and RSS are back to their pre-storm level (±10%);
 *   - orphan-proofing: SIGKILL of the master while two app workers spin in a blocked event
 *     loop: every descendant is gone within 1 s (a zombie counts as gone).
 *
 *   node test/chaos/run.js                  # the long form: 300 kills (npm run test:chaos)
 *   CHAOS_KILLS=20 node test/chaos/run.js   # fewer
 *
 * Environment: CHAOS_EGG (3; 4 runs the same app on egg 4), CHAOS_KILLS, CHAOS_WORKERS (4), CHAOS_PORT (17532), CHAOS_AGENT_KILL_RATIO
 * (0.3; the share of kills that take the agent when it may be killed), CHAOS_KILL_LAST=1 (also
 * kill the last started app worker; off by default, see `killLast`), CHAOS_AGENT_GAP (ms
 * between agent kills, 21000: see the health check below), CHAOS_KILL_INTERVAL (ms between
 * kills, 1250: cfork refuses a 60th app refork within a minute), CHAOS_TICK_MS / CHAOS_BURST (the load), CHAOS_KEEP=1 keeps the scratch directory.
 * test/chaos.test.js runs the short form of the same code through `runChaos()`.
 */

const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const { fork } = require('child_process');

const MASTER = path.join(__dirname, 'master.js');
const APP = path.join(__dirname, 'app');
// egg 3, or egg 4 (CHAOS_EGG=4 / opts.egg): egg with this repository as its cluster package
const FRAMEWORKS = {
  3: path.join(__dirname, '..', 'fixtures', 'egg'),
  4: path.join(__dirname, '..', 'fixtures', 'egg4'),
};
const FRAMEWORK = FRAMEWORKS[3];

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

// ------------------------------------------------------------------ /proc

function readStat(pid) {
  let stat;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (_) {
    return null;
  }
  const close = stat.lastIndexOf(')');
  const fields = stat.slice(close + 2).split(' ');
  return { pid, state: fields[0], ppid: Number(fields[1]) };
}

/** True while `pid` runs (a zombie waiting to be reaped has exited). */
function alive(pid) {
  const s = readStat(pid);
  return !!s && s.state !== 'Z' && s.state !== 'X';
}

function allPids() {
  return fs.readdirSync('/proc').filter(name => /^\d+$/.test(name)).map(Number);
}

/** Direct children of `pid`, with their state. */
function childrenOf(pid) {
  const out = [];
  for (const p of allPids()) {
    const s = readStat(p);
    if (s && s.ppid === pid) out.push(s);
  }
  return out;
}

/** Every descendant of `pid`. */
function descendantsOf(pid) {
  const stats = allPids().map(readStat).filter(Boolean);
  const out = [];
  let frontier = [ pid ];
  while (frontier.length) {
    const next = [];
    for (const s of stats) {
      if (frontier.includes(s.ppid)) {
        out.push(s.pid);
        next.push(s.pid);
      }
    }
    frontier = next;
  }
  return out;
}

function cmdline(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch (_) {
    return '';
  }
}

function fdCount(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch (_) {
    return -1;
  }
}

/** Resident set size in bytes. */
function rssOf(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : -1;
  } catch (_) {
    return -1;
  }
}

function median(values) {
  const sorted = values.slice().sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function get(port, timeout = 3000) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', timeout }, res => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', chunk => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

const MB = n => `${(n / 1048576).toFixed(1)} MiB`;

// ------------------------------------------------------------------ the run

/**
 * Runs the suite; resolves with the figures (and `failures`, empty when every check held).
 * @param {Object} [opts] - kills, workers, port, agentKillRatio, killInterval, tickMs, burst,
 *   log(line) for progress
 * @return {Promise<Object>} figures
 */
async function runChaos(opts = {}) {
  const env = process.env;
  const o = {
    kills: Number(opts.kills || env.CHAOS_KILLS || 300),
    workers: Number(opts.workers || env.CHAOS_WORKERS || 4),
    port: Number(opts.port || env.CHAOS_PORT || 17532),
    agentKillRatio: Number(opts.agentKillRatio !== undefined ? opts.agentKillRatio : (env.CHAOS_AGENT_KILL_RATIO || 0.3)),
    killInterval: Number(opts.killInterval || env.CHAOS_KILL_INTERVAL || 1250),
    agentGap: Number(opts.agentGap || env.CHAOS_AGENT_GAP || 21000),
    // never kill the last started app worker: when it dies while reforked ones are starting,
    // their listen can fail with EADDRINUSE and egg does not refork them (RELIABILITY.md,
    // known defects); test/chaos.test.js checks that race on its own
    killLast: opts.killLast !== undefined ? opts.killLast : env.CHAOS_KILL_LAST === '1',
    tickMs: Number(opts.tickMs || env.CHAOS_TICK_MS || 50),
    roundMs: Number(opts.roundMs || env.CHAOS_ROUND_MS || 20),
    burst: Number(opts.burst || env.CHAOS_BURST || 5),
    recoverTimeout: Number(opts.recoverTimeout || 90000),
    egg: Number(opts.egg || env.CHAOS_EGG || 3),
    log: opts.log || (line => console.log(`[chaos] ${line}`)),
  };
  const log = o.log;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'egg-cluster-rs-chaos-'));
  const masterLog = path.join(dir, 'master.log');
  const out = fs.openSync(masterLog, 'a');

  const figures = {
    workers: o.workers,
    killsPlanned: o.kills,
    appKills: 0,
    agentKills: 0,
    killsSurvived: 0,
    appDiedNotices: 0,
    agentDiedNotices: 0,
    messagesChecked: 0,
    roundsSent: 0,
    roundAnswersChecked: 0,
    tailMessagesChecked: 0,
    streamsChecked: 0,
    violations: [],
    zombies: [],
    baseline: null,
    after: null,
    maxRss: 0,
    midStormRss: 0,
    endStormRss: 0,
    maxFd: 0,
    orphanCleanupMs: null,
    durationMs: 0,
    masterLog,
    failures: [],
  };
  const fail = msg => {
    figures.failures.push(msg);
    log(`FAIL: ${msg}`);
  };

  const started = Date.now();
  const hello = new Map(); // pid → { role, at } (started: egg-ready seen)
  const beats = new Map(); // pid → latest heartbeat
  const reports = [];
  const waiters = [];
  let masterExit = null;
  let stopRounds = () => {};

  if (!FRAMEWORKS[o.egg]) throw new Error(`CHAOS_EGG must be 3 or 4, got ${o.egg}`);
  const child = fork(MASTER, [ JSON.stringify({
    baseDir: APP,
    framework: FRAMEWORKS[o.egg],
    workers: o.workers,
    port: o.port,
    env: 'prod',
  }) ], {
    execArgv: [ '--expose-gc' ],
    stdio: [ 'ignore', out, out, 'ipc' ],
    env: Object.assign({}, process.env, {
      EGG_SERVER_ENV: 'prod',
      NODE_ENV: 'production',
      CHAOS_DIR: dir,
      CHAOS_TICK_MS: String(o.tickMs),
      CHAOS_BURST: String(o.burst),
      EGG_MASTER_LOGGER_LEVEL: env.EGG_MASTER_LOGGER_LEVEL || 'INFO',
    }),
  });
  fs.closeSync(out);
  const masterPid = child.pid;
  figures.masterPid = masterPid;
  figures.egg = o.egg;

  const onMessage = msg => {
    if (!msg || typeof msg !== 'object') return;
    switch (msg.action) {
      case 'chaos-hello':
        hello.set(msg.data.pid, { role: msg.data.role, at: Date.now() });
        break;
      case 'chaos-beat':
        beats.set(msg.data.pid, msg.data);
        break;
      case 'chaos-violation':
        figures.violations.push(msg.data);
        log(`violation: ${JSON.stringify(msg.data)}`);
        break;
      case 'chaos-report':
        reports.push(msg.data);
        break;
      case 'app-worker-died':
        figures.appDiedNotices++;
        break;
      case 'agent-worker-died':
        figures.agentDiedNotices++;
        break;
      default:
        break;
    }
    for (const w of waiters.slice()) {
      if (w.match(msg)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(msg);
      }
    }
  };
  child.on('message', onMessage);
  child.on('exit', (code, signal) => { masterExit = { code, signal }; });

  const waitMessage = (match, timeout, what) => new Promise((resolve, reject) => {
    const w = { match, resolve };
    waiters.push(w);
    setTimeout(() => {
      const i = waiters.indexOf(w);
      if (i >= 0) {
        waiters.splice(i, 1);
        reject(new Error(`timed out after ${timeout}ms waiting for ${what}`));
      }
    }, timeout).unref();
  });
  const send = msg => {
    try {
      child.send(msg);
    } catch (_) {
      // the master is gone: the checks say so
    }
  };
  const ctl = (to, data) => send({ action: 'chaos-ctl', to, data });

  /**
   * Live children of the master, by role; `started` once they said hello a second ago (the
   * master marks an app worker started on the cluster 'listening' right after the hello: a
   * worker killed before that is one egg-cluster does not refork, see RELIABILITY.md).
   */
  function workersNow() {
    const kids = childrenOf(masterPid).filter(s => s.state !== 'Z' && s.state !== 'X');
    const apps = [];
    let agent = null;
    const now = Date.now();
    const started = pid => hello.has(pid) && now - hello.get(pid).at >= 1000;
    for (const k of kids) {
      const line = cmdline(k.pid);
      if (line.includes('app_worker.js')) apps.push({ pid: k.pid, started: started(k.pid) });
      else if (line.includes('agent_worker.js')) agent = { pid: k.pid, started: started(k.pid) };
    }
    return { apps, agent, kids };
  }

  /** Resolves once the master has `workers` started app workers and a started agent. */
  async function recovered(timeout) {
    const end = Date.now() + timeout;
    for (;;) {
      const w = workersNow();
      const ok = w.apps.length === o.workers && w.apps.every(a => a.started) && w.agent && w.agent.started;
      if (ok) return w;
      if (masterExit) throw new Error(`the master exited: ${JSON.stringify(masterExit)}`);
      if (Date.now() > end) {
        throw new Error(`the cluster did not recover within ${timeout}ms: ${w.apps.length} app workers ` +
          `(${w.apps.filter(a => a.started).length} started), agent ${w.agent ? w.agent.pid : 'none'}`);
      }
      await sleep(100);
    }
  }

  /** The master's fd count and RSS, after a GC, as the median of a few samples. */
  async function masterLevel() {
    const fds = [];
    const rss = [];
    for (let i = 0; i < 5; i++) {
      send({ action: 'chaos-gc' });
      await sleep(200);
      fds.push(fdCount(masterPid));
      rss.push(rssOf(masterPid));
    }
    return { fds: median(fds), rss: median(rss) };
  }

  // zombie watch and peaks, all along
  const zombieSince = new Map();
  const sampler = setInterval(() => {
    if (masterExit) return;
    const now = Date.now();
    figures.maxRss = Math.max(figures.maxRss, rssOf(masterPid));
    figures.maxFd = Math.max(figures.maxFd, fdCount(masterPid));
    const zombies = new Set();
    for (const k of childrenOf(masterPid)) {
      if (k.state !== 'Z') continue;
      zombies.add(k.pid);
      if (!zombieSince.has(k.pid)) zombieSince.set(k.pid, now);
      if (now - zombieSince.get(k.pid) > 2000 && !figures.zombies.includes(k.pid)) {
        figures.zombies.push(k.pid);
        fail(`child ${k.pid} of the master has been a zombie for more than 2 s`);
      }
    }
    for (const pid of zombieSince.keys()) if (!zombies.has(pid)) zombieSince.delete(pid);
  }, 250);

  try {
    await waitMessage(m => m.action === 'egg-ready', 60000, 'egg-ready from the master');
    await recovered(30000);
    log(`master ${masterPid} ready with ${o.workers} app workers; log: ${masterLog}`);

    // warm up under load, then the baseline
    await sleep(3000);
    figures.baseline = await masterLevel();
    log(`baseline: ${figures.baseline.fds} fds, RSS ${MB(figures.baseline.rss)}`);

    // rounds from the master, through the storm and until the load stops
    const rounds = setInterval(() => send({ action: 'chaos-round', data: figures.roundsSent++ }), o.roundMs);
    stopRounds = () => clearInterval(rounds);

    // the storm
    let lastKill = 0;
    let lastAgentKill = 0;
    for (let i = 0; i < o.kills;) {
      if (masterExit) throw new Error(`the master exited during the storm: ${JSON.stringify(masterExit)}`);
      const w = workersNow();
      const now = Date.now();
      const startedApps = w.apps.filter(a => a.started);
      // egg's health check (every 10 s) exits the master when the agent is missing at three
      // checks in a row: the agent is killed at most once per agentGap (21 s), so that at least
      // every other check finds it started
      const agentKillable = w.agent && w.agent.started && now - lastAgentKill >= o.agentGap;
      let target = null;
      if (now - lastKill >= o.killInterval) {
        if (agentKillable && Math.random() < o.agentKillRatio) {
          target = { pid: w.agent.pid, role: 'agent' };
        } else if (startedApps.length > (o.killLast ? 0 : 1)) {
          target = Object.assign({ role: 'app' }, startedApps[Math.floor(Math.random() * startedApps.length)]);
        }
      }
      if (!target) {
        await sleep(50);
        continue;
      }
      try {
        process.kill(target.pid, 'SIGKILL');
      } catch (_) {
        continue; // it died meanwhile
      }
      hello.delete(target.pid);
      lastKill = Date.now();
      if (target.role === 'agent') {
        figures.agentKills++;
        lastAgentKill = lastKill;
      } else {
        figures.appKills++;
      }
      i++;
      // the raw level half way and at the end of the storm: a leak grows with the kills
      if (i === Math.ceil(o.kills / 2)) figures.midStormRss = rssOf(masterPid);
      if (i === o.kills) figures.endStormRss = rssOf(masterPid);
      if (i % 25 === 0 || i === o.kills) {
        log(`${i}/${o.kills} kills (${figures.appKills} app, ${figures.agentKills} agent), ` +
          `master RSS ${MB(rssOf(masterPid))}, ${fdCount(masterPid)} fds`);
      }
    }

    // recovery (a cluster that does not come back whole is a failure; the other checks go on
    // with what is there)
    let back;
    try {
      back = await recovered(o.recoverTimeout);
    } catch (err) {
      if (masterExit) throw err;
      fail(err.message);
      back = workersNow();
      if (!back.agent) throw new Error('no agent: the remaining checks need one');
    }
    figures.recoveredApps = back.apps.length;
    figures.killsSurvived = figures.appKills + figures.agentKills;
    const res = await get(o.port);
    assert.strictEqual(res.status, 200, `GET / answered ${res.status}`);
    log(`recovered: master ${masterPid} alive, ${back.apps.length} app workers and agent ${back.agent.pid} started, HTTP 200`);

    // let the new workers run under load, then the level after the storm
    await sleep(3000);
    figures.after = await masterLevel();
    log(`after: ${figures.after.fds} fds, RSS ${MB(figures.after.rss)}`);
    const fdDelta = Math.abs(figures.after.fds - figures.baseline.fds) / figures.baseline.fds;
    const rssDelta = Math.abs(figures.after.rss - figures.baseline.rss) / figures.baseline.rss;
    figures.fdDelta = fdDelta;
    figures.rssDelta = rssDelta;
    if (fdDelta > 0.1) fail(`the master's fd count went from ${figures.baseline.fds} to ${figures.after.fds}`);
    // A smaller RSS after the storm is no leak (the baseline holds a younger heap): only growth
    // fails. The ~48 MiB master grows once by up to ~9 MiB under a storm (V8 growing its heap,
    // malloc keeping arenas), then stays flat: the cap is 10% or 16 MiB, whichever is more, and a
    // long storm must not keep growing in its second half (a leak grows with the kills).
    const MiB = 1024 * 1024;
    if (o.kills >= 100 && figures.midStormRss > 0 && figures.endStormRss - figures.midStormRss > 4 * MiB) {
      fail(`the master's RSS kept growing through the storm: ${MB(figures.midStormRss)} after ${Math.ceil(o.kills / 2)} kills, ${MB(figures.endStormRss)} after ${o.kills}`);
    }
    if (figures.after.rss > Math.max(figures.baseline.rss * 1.1, figures.baseline.rss + 16 * MiB)) fail(`the master's RSS went from ${MB(figures.baseline.rss)} to ${MB(figures.after.rss)}`);

    // stop the load, let it drain, collect the survivors' reports
    stopRounds();
    ctl('app', { op: 'stop' });
    ctl('agent', { op: 'stop' });
    await sleep(1500);
    const token = `t${Date.now()}`;
    ctl('app', { op: 'report', token });
    ctl('agent', { op: 'report', token });
    const end = Date.now() + 15000;
    const expectReports = back.apps.length + 1;
    while (reports.filter(r => r.token === token).length < expectReports && Date.now() < end) await sleep(50);
    const final = reports.filter(r => r.token === token);
    if (final.length !== expectReports) fail(`${final.length} of ${expectReports} workers answered the report`);
    checkTails(final, figures, fail);

    // every figure of messages checked: the survivors' last count, the others' last heartbeat
    for (const r of final) beats.set(r.pid, { checked: r.checked, violations: r.violations, roundAnswers: r.roundAnswers });
    figures.messagesChecked = Array.from(beats.values()).reduce((n, b) => n + (b.checked || 0), 0);
    figures.roundAnswersChecked = Array.from(beats.values()).reduce((n, b) => n + (b.roundAnswers || 0), 0);
    if (figures.roundsSent && !figures.roundAnswersChecked) fail(`${figures.roundsSent} rounds sent, no answer checked`);
    const reportedViolations = Array.from(beats.values()).reduce((n, b) => n + (b.violations || 0), 0);
    if (figures.violations.length || reportedViolations) {
      fail(`${Math.max(figures.violations.length, reportedViolations)} ordering/delivery violations, ` +
        `first: ${JSON.stringify(figures.violations[0])}`);
    }
    if (figures.appDiedNotices !== figures.appKills) {
      fail(`the parent heard app-worker-died ${figures.appDiedNotices} times for ${figures.appKills} kills`);
    }
    if (figures.agentDiedNotices !== figures.agentKills) {
      fail(`the parent heard agent-worker-died ${figures.agentDiedNotices} times for ${figures.agentKills} kills`);
    }

    // orphan-proofing: SIGKILL the master while two app workers spin
    const blockPids = back.apps.slice(0, 2).map(a => a.pid);
    ctl('app', { op: 'block', pids: blockPids });
    await Promise.all(blockPids.map(pid => waitMessage(m => m.action === 'chaos-blocking' && m.data.pid === pid, 10000, `${pid} blocking`)));
    await sleep(300);
    const tree = descendantsOf(masterPid);
    clearInterval(sampler);
    process.kill(masterPid, 'SIGKILL');
    const killedAt = Date.now();
    while (tree.some(alive) && Date.now() - killedAt < 5000) await sleep(10);
    figures.orphanCleanupMs = Date.now() - killedAt;
    figures.orphanTree = tree.length;
    const left = tree.filter(alive);
    if (left.length) fail(`descendants still running 5 s after the master was SIGKILLed: ${left.join(', ')}`);
    else if (figures.orphanCleanupMs > 1000) fail(`the descendants of the SIGKILLed master took ${figures.orphanCleanupMs}ms to go`);
    log(`master SIGKILLed with 2 blocked app workers: ${tree.length} descendants gone in ${figures.orphanCleanupMs}ms`);
  } catch (err) {
    fail(err.message);
  } finally {
    clearInterval(sampler);
    stopRounds();
    // whatever happened: nothing of ours keeps running
    const tree = masterExit ? [] : descendantsOf(masterPid);
    try {
      process.kill(masterPid, 'SIGKILL');
    } catch (_) {
      // gone
    }
    for (const pid of tree) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (_) {
        // gone
      }
    }
    child.removeListener('message', onMessage);
    figures.durationMs = Date.now() - started;
    if (!figures.failures.length && !process.env.CHAOS_KEEP) {
      fs.rmSync(dir, { recursive: true, force: true });
      figures.masterLog = null;
    }
  }
  return figures;
}

/**
 * The tails: for each surviving receiver and each stream from a surviving sender, the last
 * number received is the last one sent; sendTo streams (to a listening pid) start at 0.
 */
function checkTails(final, figures, fail) {
  const byPid = new Map(final.map(r => [ r.pid, r ]));
  const agent = final.find(r => r.role === 'agent');
  const expected = []; // { receiver, kind, src, last, fromZero }
  for (const s of final) {
    if (s.role === 'agent') {
      for (const r of final) {
        if (r.role !== 'app') continue;
        // every survivor has run under load for seconds before the stop: every stream between
        // two survivors has arrived in part at least (from where the receiver joined) and whole
        // to its end
        if (s.sent.seq >= 0) {
          expected.push({ receiver: r, kind: 'bcast', src: s.pid, last: s.sent.seq, fromZero: false, required: true });
        }
        const n = s.sent.perTarget[r.pid];
        if (n !== undefined) expected.push({ receiver: r, kind: 'a2p', src: s.pid, last: n, fromZero: true, required: true });
      }
    } else {
      if (agent && s.sent.seq >= 0) {
        expected.push({ receiver: agent, kind: 'p2a', src: s.pid, last: s.sent.seq, fromZero: false, required: true });
      }
      for (const [ pid, n ] of Object.entries(s.sent.perTarget)) {
        const r = byPid.get(Number(pid));
        if (r) expected.push({ receiver: r, kind: 'p2p', src: s.pid, last: n, fromZero: true, required: true });
      }
    }
  }
  for (const e of expected) {
    const stream = e.receiver.streams.find(st => st.kind === e.kind && st.src === e.src);
    const what = `${e.kind} stream ${e.src} → ${e.receiver.pid}`;
    if (!stream) {
      if (e.required) fail(`${what}: nothing received of ${e.last + 1} sent`);
      continue;
    }
    figures.streamsChecked++;
    figures.tailMessagesChecked += stream.count;
    if (stream.last !== e.last) fail(`${what}: last received ${stream.last}, last sent ${e.last}`);
    if (e.fromZero && stream.first !== 0) fail(`${what}: first received ${stream.first}, not 0`);
    if (stream.count !== stream.last - stream.first + 1) {
      fail(`${what}: ${stream.count} received between ${stream.first} and ${stream.last}`);
    }
  }
}

function printFigures(f, write = console.log) {
  write('');
  write('egg-cluster-rs chaos figures');
  write('----------------------------');
  write(`egg                          ${f.egg || 3}`);
  write(`app workers                  ${f.workers}`);
  write(`kills survived               ${f.killsSurvived} (${f.appKills} app workers, ${f.agentKills} agents; planned ${f.killsPlanned})`);
  write(`workers back after storm     ${f.recoveredApps === undefined ? '-' : `${f.recoveredApps} of ${f.workers} app workers, agent`}`);
  write(`died notices to the parent   ${f.appDiedNotices} app-worker-died, ${f.agentDiedNotices} agent-worker-died`);
  write(`messages checked             ${f.messagesChecked} (in order, exactly once, per sender)`);
  write(`survivor streams checked     ${f.streamsChecked} streams, ${f.tailMessagesChecked} messages, tails complete`);
  write(`tick rounds                  ${f.roundsSent} sent, ${f.roundAnswersChecked} answers checked after their round`);
  write(`violations                   ${f.violations.length}`);
  write(`zombies (> 2 s)              ${f.zombies.length}`);
  if (f.baseline) write(`master fds   before / after  ${f.baseline.fds} / ${f.after ? f.after.fds : '-'} (max ${f.maxFd})`);
  if (f.baseline) write(`master RSS   before / after  ${MB(f.baseline.rss)} / ${f.after ? MB(f.after.rss) : '-'} (max ${MB(f.maxRss)})`);
  if (f.midStormRss) write(`master RSS   mid / end storm  ${MB(f.midStormRss)} / ${f.endStormRss ? MB(f.endStormRss) : '-'}`);
  write(`orphan cleanup               ${f.orphanCleanupMs === null ? '-' : `${f.orphanTree} descendants gone ${f.orphanCleanupMs} ms after SIGKILL of the master (2 blocked)`}`);
  write(`duration                     ${(f.durationMs / 1000).toFixed(1)} s`);
  write(`result                       ${f.failures.length ? `FAILED (${f.failures.length})` : 'ok'}`);
  for (const msg of f.failures) write(`  - ${msg}`);
  if (f.masterLog) write(`master log                   ${f.masterLog}`);
}

/**
 * Starts test/chaos/app under our master in production mode, this process as its parent.
 * @param {Object} opts - workers, port, env (extra environment), logFile, options (more
 *   startCluster options)
 * @return {Object} { child, pid, messages, wait(match, timeout, what), apps(), agent(), kill() }
 */
function launch(opts) {
  const out = fs.openSync(opts.logFile, 'a');
  const child = fork(MASTER, [ JSON.stringify(Object.assign({
    baseDir: APP, framework: FRAMEWORK, workers: opts.workers, port: opts.port, env: 'prod',
  }, opts.options)) ], {
    execArgv: [ '--expose-gc' ],
    stdio: [ 'ignore', out, out, 'ipc' ],
    env: Object.assign({}, process.env, { EGG_SERVER_ENV: 'prod', NODE_ENV: 'production' }, opts.env),
  });
  fs.closeSync(out);
  const messages = [];
  const waiters = [];
  child.on('message', msg => {
    messages.push(msg);
    for (const w of waiters.slice()) {
      if (w.match(msg)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(msg);
      }
    }
  });
  const byScript = script => childrenOf(child.pid)
    .filter(s => s.state !== 'Z' && s.state !== 'X' && cmdline(s.pid).includes(script))
    .map(s => s.pid);
  return {
    child,
    pid: child.pid,
    messages,
    wait(match, timeout = 30000, what = 'a message') {
      const found = messages.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { match, resolve };
        waiters.push(w);
        setTimeout(() => {
          const i = waiters.indexOf(w);
          if (i < 0) return;
          waiters.splice(i, 1);
          reject(new Error(`timed out after ${timeout}ms waiting for ${what}`));
        }, timeout).unref();
      });
    },
    apps: () => byScript('app_worker.js'),
    agent: () => byScript('agent_worker.js')[0],
    kill() {
      const tree = descendantsOf(child.pid);
      for (const pid of [ child.pid, ...tree ]) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch (_) {
          // gone
        }
      }
    },
  };
}

module.exports = { runChaos, printFigures, checkTails, launch, alive, childrenOf, descendantsOf, fdCount, rssOf, sleep };

if (require.main === module) {
  runChaos().then(figures => {
    printFigures(figures);
    if (process.env.CHAOS_JSON) fs.writeFileSync(process.env.CHAOS_JSON, JSON.stringify(figures, null, 2));
    process.exitCode = figures.failures.length ? 1 : 0;
  }, err => {
    console.error(err);
    process.exitCode = 1;
  });
}
