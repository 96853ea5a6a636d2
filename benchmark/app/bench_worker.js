'use strict';

// Runs inside the agent and every app worker of the benchmark app. All benchmark traffic
// goes through egg's own messenger (app.messenger / agent.messenger); replies to the driver
// go `to: 'parent'` through the master (process.send({ action, data, to: 'parent' })).
//
// Driver → workers (through the master, from the parent):
//   bench:hello                          → bench:hi { pid, role }
//   bench:arm  { id, role, pid?, senders, n }   arm a receiver: expect n messages from each
//                                        of `senders` senders, in order per sender
//                                        → bench:armed; later bench:done (with arrival time)
//   bench:go   { id, role, pid?, via, n, size } send n messages of `size` payload bytes with
//                                        messenger[via] ('sendToApp' | 'sendToAgent')
//                                        → bench:sent { t0, t1 }
//   bench:rtt  { id, pid, agentPid, n, warmup, size } app → agent → same app, one in flight
//                                        (sendTo by pid both ways) → bench:rtt-done
//   bench:status                         → bench:status (what a receiver has seen so far)

const now = () => Number(process.hrtime.bigint()) / 1e3; // µs, CLOCK_MONOTONIC (same clock in every process)

function reply(action, data) {
  process.send({ action, data, to: 'parent' });
}

const payloads = new Map();
function payload(size) {
  if (!payloads.has(size)) payloads.set(size, 'x'.repeat(size));
  return payloads.get(size);
}

module.exports = function install(messenger, role) {
  const pid = process.pid;
  const mine = cmd => cmd && cmd.role === role && (!cmd.pid || cmd.pid === pid);
  let rx = null;
  let stray = 0;

  messenger.on('bench:hello', () => reply('bench:hi', { pid, role }));

  messenger.on('bench:arm', cmd => {
    if (!mine(cmd)) return;
    rx = { id: cmd.id, total: cmd.n * cmd.senders, senders: cmd.senders, got: 0, next: new Map(), errors: 0, firstError: null, tFirst: 0, tLast: 0 };
    reply('bench:armed', { id: cmd.id, pid, role });
  });

  messenger.on('bench:m', d => {
    if (!rx || d.i !== rx.id) { stray++; return; }
    const t = now();
    if (rx.got === 0) rx.tFirst = t;
    const expected = rx.next.get(d.w) || 0;
    if (d.s !== expected) {
      rx.errors++;
      if (!rx.firstError) rx.firstError = { sender: d.w, expected, got: d.s };
    }
    rx.next.set(d.w, d.s + 1);
    rx.got++;
    if (rx.got === rx.total) {
      rx.tLast = t;
      if (rx.next.size !== rx.senders) {
        rx.errors++;
        rx.firstError = rx.firstError || { senders: rx.next.size, expectedSenders: rx.senders };
      }
      reply('bench:done', status());
    }
  });

  messenger.on('bench:go', cmd => {
    if (!mine(cmd)) return;
    const p = payload(cmd.size);
    const send = messenger[cmd.via].bind(messenger);
    const t0 = now();
    // BENCH_INJECT=drop|reorder: a self-test of the driver's checks (lose, or swap, seq 10)
    const inject = cmd.n > 11 && process.env.BENCH_INJECT;
    for (let s = 0; s < cmd.n; s++) {
      if (inject === 'drop' && s === 10) continue;
      if (inject === 'reorder' && s === 10) {
        send('bench:m', { i: cmd.id, w: pid, s: 11, p });
        send('bench:m', { i: cmd.id, w: pid, s: 10, p });
        s = 11;
        continue;
      }
      send('bench:m', { i: cmd.id, w: pid, s, p });
    }
    reply('bench:sent', { id: cmd.id, pid, role, t0, t1: now() });
  });

  messenger.on('bench:status', () => reply('bench:status', status()));

  function status() {
    return rx
      ? { id: rx.id, pid, role, got: rx.got, total: rx.total, errors: rx.errors, firstError: rx.firstError, tFirst: rx.tFirst, tLast: rx.tLast, stray }
      : { pid, role, got: 0, stray };
  }

  // round trip: the agent echoes a ping back to the app that sent it, by pid
  if (role === 'agent') {
    messenger.on('bench:ping', d => messenger.sendTo(d.w, 'bench:pong', d));
    return;
  }
  let trip = null;
  messenger.on('bench:rtt', cmd => {
    if (cmd.pid !== pid) return;
    trip = { cmd, s: 0, samples: new Float64Array(cmd.n), p: payload(cmd.size), errors: 0, t: 0 };
    ping();
  });
  function ping() {
    trip.t = now();
    messenger.sendTo(trip.cmd.agentPid, 'bench:ping', { i: trip.cmd.id, w: pid, s: trip.s, p: trip.p });
  }
  messenger.on('bench:pong', d => {
    const t = now();
    if (!trip || d.i !== trip.cmd.id) { stray++; return; }
    if (d.s !== trip.s) trip.errors++;
    const k = trip.s - trip.cmd.warmup;
    if (k >= 0) trip.samples[k] = t - trip.t;
    trip.s++;
    if (trip.s < trip.cmd.warmup + trip.cmd.n) return ping();
    const sorted = Array.from(trip.samples).sort((a, b) => a - b);
    const q = f => sorted[Math.min(sorted.length - 1, Math.floor(f * sorted.length))];
    reply('bench:rtt-done', {
      id: trip.cmd.id, pid, n: sorted.length, errors: trip.errors,
      p50: q(0.5), p90: q(0.9), p99: q(0.99), max: sorted[sorted.length - 1],
      mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
      samples: sorted.map(x => Math.round(x * 10) / 10), // the driver merges repetitions
    });
    trip = null;
  });
};
