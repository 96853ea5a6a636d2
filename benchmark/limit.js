'use strict';

// The reference run ("limit"): the same scenarios with two kinds of plain Node processes
// talking directly over Node's IPC (child_process.fork), no master in between. This process
// plays the agent; its children (limit_child.js) play the app workers. Forked by the driver,
// which sends one command at a time and gets { action: 'limit:result' | 'limit:error' } back.
const path = require('path');
const { fork } = require('child_process');
const { now, sleep, pin, allCpus } = require('./lib');

let children = [];

function once(child, action, id, count, timeout) {
  const kids = Array.isArray(child) ? child : [ child ];
  return new Promise((resolve, reject) => {
    const got = [];
    let t = null;
    let h = null;
    const finish = () => { clearTimeout(t); kids.forEach(k => k.off('message', h)); resolve(got); };
    h = m => {
      if (m && m.action === action && (id == null || m.data.id === id)) {
        got.push(m.data);
        if (got.length === count) finish();
      }
    };
    t = setTimeout(() => {
      kids.forEach(k => k.off('message', h));
      reject(new Error(`limit: timeout waiting for ${count}× ${action} (got ${got.length})`));
    }, timeout);
    kids.forEach(k => k.on('message', h));
  });
}

const handlers = {
  async setup({ workers }) {
    children = [];
    for (let i = 0; i < workers; i++) children.push(fork(path.join(__dirname, 'limit_child.js'), [], { stdio: 'inherit' }));
    await Promise.all(children.map(c => new Promise(r => c.once('spawn', r))));
    await sleep(300);
    return { pids: children.map(c => c.pid) };
  },

  // this process → every child, n messages each (serialized per child, as Node does)
  async toApps({ id, n, size, timeout }) {
    const arm = once(children, 'bench:armed', id, children.length, timeout);
    children.forEach(c => c.send({ action: 'bench:arm', data: { id, n, senders: 1 } }));
    await arm;
    const done = once(children, 'bench:done', id, children.length, timeout);
    const p = 'x'.repeat(size);
    const t0 = now();
    for (let s = 0; s < n; s++) {
      const msg = { action: 'bench:m', data: { i: id, w: process.pid, s, p }, to: 'app', from: 'agent' };
      for (const c of children) c.send(msg);
    }
    const res = await done;
    const errors = res.reduce((a, r) => a + r.errors, 0);
    const tEnd = Math.max(...res.map(r => r.tLast));
    return { deliveries: n * children.length, seconds: (tEnd - t0) / 1e6, errors, got: res.reduce((a, r) => a + r.got, 0) };
  },

  // every child → this process, n messages each
  async toAgent({ id, n, size, timeout }) {
    const next = new Map();
    let got = 0;
    let errors = 0;
    let tEnd = 0;
    const total = n * children.length;
    const done = new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`limit: toAgent got ${got} of ${total}`)), timeout);
      const h = m => {
        if (m.action !== 'bench:m' || m.data.i !== id) return;
        const d = m.data;
        const expected = next.get(d.w) || 0;
        if (d.s !== expected) errors++;
        next.set(d.w, d.s + 1);
        if (++got === total) {
          tEnd = now();
          clearTimeout(t);
          children.forEach(c => c.off('message', h));
          resolve();
        }
      };
      children.forEach(c => c.on('message', h));
    });
    const sent = once(children, 'bench:sent', id, children.length, timeout);
    children.forEach(c => c.send({ action: 'bench:go', data: { id, n, size } }));
    await done;
    const t0 = Math.min(...(await sent).map(s => s.t0));
    if (next.size !== children.length) errors++;
    return { deliveries: total, seconds: (tEnd - t0) / 1e6, errors, got };
  },

  // this process ↔ one child, one message in flight, pinned to CPU 0 like the egg runs
  async rtt({ id, n, warmup, size }) {
    const child = children[0];
    pin([ process.pid, ...children.map(c => c.pid) ], '0');
    try {
      const p = 'x'.repeat(size);
      const samples = new Float64Array(n);
      let errors = 0;
      for (let s = 0; s < warmup + n; s++) {
        const t = now();
        const pong = new Promise(r => child.once('message', r));
        child.send({ action: 'bench:ping', data: { i: id, w: process.pid, s, p }, to: 'agent', receiverPid: String(child.pid) });
        const m = await pong;
        const dt = now() - t;
        if (m.action !== 'bench:pong' || m.data.s !== s) errors++;
        if (s >= warmup) samples[s - warmup] = dt;
      }
      const sorted = Array.from(samples).sort((a, b) => a - b);
      const q = f => sorted[Math.min(sorted.length - 1, Math.floor(f * sorted.length))];
      return { n, errors, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: sorted[n - 1], samples: sorted.map(x => Math.round(x * 10) / 10) };
    } finally {
      pin([ process.pid, ...children.map(c => c.pid) ], allCpus);
    }
  },

  async teardown() {
    await Promise.all(children.map(c => new Promise(r => { c.once('exit', r); c.kill(); })));
    children = [];
    return {};
  },
};

process.on('message', async ({ cmd, args }) => {
  try {
    process.send({ action: 'limit:result', data: await handlers[cmd](args) });
  } catch (err) {
    process.send({ action: 'limit:error', data: { message: err.message } });
  }
});
