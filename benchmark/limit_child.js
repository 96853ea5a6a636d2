'use strict';

// One of the "app" processes of the reference run: a plain Node child talking to its parent
// (limit.js) over Node's IPC, no master in between. Same messages as the egg run.
const now = () => Number(process.hrtime.bigint()) / 1e3;
const pid = process.pid;
let rx = null;
let stray = 0;

process.on('message', m => {
  const d = m.data;
  switch (m.action) {
    case 'bench:m': {
      if (!rx || d.i !== rx.id) { stray++; return; }
      const t = now();
      const expected = rx.next.get(d.w) || 0;
      if (d.s !== expected) rx.errors++;
      rx.next.set(d.w, d.s + 1);
      if (++rx.got === rx.total) {
        if (rx.next.size !== rx.senders) rx.errors++;
        process.send({ action: 'bench:done', data: { id: rx.id, pid, got: rx.got, errors: rx.errors, tLast: t, stray } });
      }
      return;
    }
    case 'bench:arm':
      rx = { id: d.id, total: d.n * d.senders, senders: d.senders, got: 0, next: new Map(), errors: 0 };
      process.send({ action: 'bench:armed', data: { id: d.id, pid } });
      return;
    case 'bench:go': {
      const p = 'x'.repeat(d.size);
      const t0 = now();
      for (let s = 0; s < d.n; s++) process.send({ action: 'bench:m', data: { i: d.id, w: pid, s, p }, to: 'agent' });
      process.send({ action: 'bench:sent', data: { id: d.id, pid, t0, t1: now() } });
      return;
    }
    case 'bench:ping':
      process.send({ action: 'bench:pong', data: d, to: 'app', receiverPid: String(d.w) });
      return;
    case 'bench:status':
      process.send({ action: 'bench:status', data: { pid, got: rx && rx.got, total: rx && rx.total, stray } });
      return;
    default:
  }
});
