'use strict';

// The message load and its checks, shared by agent.js and app.js.
//
// Every sender numbers each of its streams 0, 1, 2, … A stream is (kind, sender pid) and,
// for sendTo, the receiver too. A receiver remembers the last number of every stream it hears
// and expects the next one to be last + 1: anything else is a gap (a lost message), a
// duplicate or a reordering, and is reported to the driver at once. The driver later compares
// what the survivors sent with what the survivors received (the tails).
//
// Rounds: the master sends round k to the app workers and the agent in one tick; each app
// worker answers the agent, the agent answers every app worker. An answer to round k must find
// its receiver already past round k (DESIGN.md, delivery guarantee 2); a worker checks the
// rounds from the first one it saw (one forked later never got the earlier ones).

const MAX_VIOLATION_REPORTS = 50;

function toParent(action, data) {
  try {
    process.send({ action, data, to: 'parent' });
  } catch (_) {
    // the channel is gone: the master died, we are about to exit anyway
  }
}

class Load {
  /**
   * @param {Object} worker - an egg Agent or Application
   * @param {String} role - 'agent' | 'app'
   */
  constructor(worker, role) {
    this.worker = worker;
    this.messenger = worker.messenger;
    this.role = role;
    this.pid = process.pid;
    this.tickMs = Number(process.env.CHAOS_TICK_MS || 50);
    this.burst = Number(process.env.CHAOS_BURST || 5);
    this.running = false;
    this.timer = null;
    this.startedAt = 0;
    // what we send
    this.seq = 0; // broadcast (agent) or to-agent (app) stream
    this.perTarget = new Map(); // pid → next seq of our sendTo stream to it
    this.peers = []; // app pids (apps learn them from the agent)
    this.peerIndex = 0;
    // what we receive: "kind:src" → { first, last, count, firstAt, lastAt }
    this.streams = new Map();
    this.checked = 0;
    this.violations = 0;
    // the master's rounds seen (null: none yet) and answers checked against them
    this.firstRound = null;
    this.lastRound = null;
    this.roundAnswers = 0;
  }

  round(k) {
    if (typeof k !== 'number') return;
    if (this.firstRound === null) this.firstRound = k;
    this.lastRound = k;
    if (this.role === 'agent') this.messenger.sendToApp('chaos-round-answer', k);
    else this.messenger.sendToAgent('chaos-round-answer', k);
  }

  roundAnswer(k) {
    if (typeof k !== 'number' || this.firstRound === null || k < this.firstRound) return;
    if (k > this.lastRound) {
      this.violate({ type: 'answer-overtook-round', round: k, lastRoundSeen: this.lastRound });
    } else {
      this.roundAnswers++;
    }
  }

  receive(kind, data) {
    if (!data || typeof data.seq !== 'number') {
      this.violate({ type: 'malformed', kind, data });
      return;
    }
    const key = `${kind}:${data.src}`;
    const now = Date.now();
    const s = this.streams.get(key);
    if (!s) {
      this.streams.set(key, { kind, src: data.src, first: data.seq, last: data.seq, count: 1, firstAt: now, lastAt: now });
      this.checked++;
      return;
    }
    if (data.seq === s.last + 1) {
      s.last = data.seq;
      s.count++;
      s.lastAt = now;
      this.checked++;
      return;
    }
    this.violate({
      type: data.seq <= s.last ? 'duplicate-or-reordered' : 'gap',
      stream: key,
      expected: s.last + 1,
      got: data.seq,
    });
    if (data.seq > s.last) s.last = data.seq;
    s.lastAt = now;
  }

  violate(detail) {
    this.violations++;
    if (this.violations <= MAX_VIOLATION_REPORTS) {
      toParent('chaos-violation', Object.assign({ role: this.role, pid: this.pid }, detail));
    }
  }

  start() {
    if (this.timer) return;
    this.running = true;
    this.startedAt = Date.now();
    this.timer = setInterval(() => this.tick(), this.tickMs);
    // a heartbeat: how much this process has checked so far (kept by the driver, so the
    // figures include workers that are killed later)
    if (!this.beat) {
      this.beat = setInterval(() => toParent('chaos-beat', this.summary()), 1000);
      this.beat.unref();
    }
  }

  stop() {
    this.running = false;
    clearInterval(this.timer);
    this.timer = null;
  }

  nextFor(pid) {
    const n = this.perTarget.get(pid) || 0;
    this.perTarget.set(pid, n + 1);
    return n;
  }

  tick() {
    if (!this.running) return;
    const m = this.messenger;
    if (this.role === 'agent') {
      // agent → every app worker (egg's sendToApp: a broadcast routed by the master)
      for (let i = 0; i < this.burst; i++) m.sendToApp('chaos-bcast', { src: this.pid, seq: this.seq++ });
      // agent → each app worker by pid (sendTo)
      for (const pid of m.opids || []) m.sendTo(pid, 'chaos-a2p', { src: this.pid, seq: this.nextFor(pid) });
      // tell the apps who their peers are (not checked)
      if (this.seq % (this.burst * 10) === 0) m.sendToApp('chaos-peers', (m.opids || []).slice());
    } else {
      // app → agent
      for (let i = 0; i < this.burst; i++) m.sendToAgent('chaos-p2a', { src: this.pid, seq: this.seq++ });
      // app → another app by pid (sendTo)
      const peers = this.peers.filter(pid => pid !== this.pid);
      if (peers.length) {
        const pid = peers[this.peerIndex++ % peers.length];
        m.sendTo(pid, 'chaos-p2p', { src: this.pid, seq: this.nextFor(pid) });
      }
    }
  }

  report() {
    const perTarget = {};
    for (const [ pid, n ] of this.perTarget) perTarget[pid] = n - 1;
    return {
      role: this.role,
      pid: this.pid,
      running: this.running,
      startedAt: this.startedAt,
      // the last seq of each of our streams (-1: none sent)
      sent: { seq: this.seq - 1, perTarget },
      streams: Array.from(this.streams.values()),
      checked: this.checked,
      violations: this.violations,
      roundAnswers: this.roundAnswers,
      rss: process.memoryUsage().rss,
    };
  }

  summary() {
    return { role: this.role, pid: this.pid, checked: this.checked, violations: this.violations, roundAnswers: this.roundAnswers };
  }

  /** Wires the messenger: checks, the driver's control messages, hello once ready. */
  install() {
    const m = this.messenger;
    if (this.role === 'agent') {
      m.on('chaos-p2a', data => this.receive('p2a', data));
    } else {
      m.on('chaos-bcast', data => this.receive('bcast', data));
      m.on('chaos-a2p', data => this.receive('a2p', data));
      m.on('chaos-p2p', data => this.receive('p2p', data));
      m.on('chaos-peers', pids => {
        if (Array.isArray(pids)) this.peers = pids.map(Number);
      });
    }
    m.on('chaos-round', k => this.round(k));
    m.on('chaos-round-answer', k => this.roundAnswer(k));
    m.on('chaos-ctl', ctl => {
      if (!ctl) return;
      if (ctl.op === 'stop') this.stop();
      if (ctl.op === 'start') this.start();
      if (ctl.op === 'report') toParent('chaos-report', Object.assign({ token: ctl.token }, this.report()));
      // a blocked event loop, for the orphan check: only a signal stops it now
      if (ctl.op === 'block' && (!ctl.pids || ctl.pids.includes(this.pid))) {
        toParent('chaos-blocking', { role: this.role, pid: this.pid });
        setTimeout(() => { for (;;) { /* spin */ } }, 50);
      }
    });
    // hello: the worker counts as started for the driver. An app worker says it once its
    // server listens (the master counts it as started on the cluster 'listening' that follows;
    // egg-ready alone is no proof: the master broadcasts it to every app worker, still
    // starting ones included, whenever a reforked worker starts). The agent: on egg-ready,
    // which the master sends once the agent has started.
    let ready = false;
    let listening = this.role === 'agent';
    const hello = () => {
      if (!ready || !listening || this.helloSent) return;
      this.helloSent = true;
      toParent('chaos-hello', { role: this.role, pid: this.pid });
    };
    if (this.role === 'app') {
      this.worker.once('server', server => {
        if (server.listening) {
          listening = true;
          hello();
        } else {
          server.once('listening', () => {
            listening = true;
            hello();
          });
        }
      });
    }
    m.once('egg-ready', () => {
      if (process.env.CHAOS_AUTOSTART !== '0') this.start();
      ready = true;
      hello();
    });
  }
}

module.exports = { Load };
