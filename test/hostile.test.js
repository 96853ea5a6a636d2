'use strict';

const assert = require('assert');
const crypto = require('crypto');
const fs = require('fs');
const { WorkerPool } = require('../lib/pool');
const { PoolHarness, WORKER, sleep, waitUntil } = require('./fixtures/pool/harness');

let seq = 0;
const unique = name => `${name}-${++seq}`;

/** The master still routes: agent → app `b` by pid, then `b` → agent. */
async function roundTrip(h, agent, b) {
  const action = unique('round-trip');
  await h.ctl(agent.pid, 'send', { msg: { action, data: 'there', receiverPid: String(b.pid) } });
  await h.got(b.pid, m => m.action === action && m.from === 'agent', 10000, 'the round trip there');
  await h.ctl(b.pid, 'send', { msg: { action, data: 'back' } });
  await h.got(agent.pid, m => m.action === action && m.data === 'back', 10000, 'the round trip back');
}

/** The sockets this process holds open, as readlink() names them. */
function openSockets() {
  const names = new Set();
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      names.add(fs.readlinkSync(`/proc/self/fd/${fd}`));
    } catch (_) {
      // closed meanwhile
    }
  }
  return names;
}

describe('test/hostile.test.js', () => {
  let h;
  let agent;
  let bad; // the app worker that misbehaves
  let good; // another app worker

  async function start(options) {
    h = new PoolHarness(options);
    // forked together, so that their startups overlap
    [ agent, bad, good ] = await Promise.all([ h.fork('agent'), h.fork('app'), h.fork('app') ]);
  }

  afterEach(() => {
    if (h) h.close();
    h = null;
  });

  describe('with the default line cap', () => {
    beforeEach(() => start());

    it('a malformed line is reported as an error naming the worker, and routing goes on', async () => {
      const after = unique('after-malformed');
      h.ctl(bad.pid, 'raw', { text: '{"action":"half\n', after: { action: after } });
      const err = await h.errorFor(bad.pid);
      assert.strictEqual(err.code, 'ERR_BAD_MESSAGE');
      assert.strictEqual(err.pid, bad.pid);
      assert(err.message.includes(String(bad.pid)), err.message);
      await h.got(agent.pid, m => m.action === after, 10000, "the bad worker's next message");
      await roundTrip(h, agent, good);
    });

    it('a valid line in the same write as a malformed one still arrives', async () => {
      const same = unique('same-write');
      h.ctl(bad.pid, 'raw', { text: `not json at all\n{"action":"${same}","data":1}\n` });
      await h.errorFor(bad.pid, 'ERR_BAD_MESSAGE');
      const got = await h.got(agent.pid, m => m.action === same);
      assert.deepStrictEqual(got.msg, { action: same, data: 1, from: 'app', to: 'agent' });
    });

    for (const raw of [ '42', '[1]', 'null', 'true' ]) {
      it(`a non-object line ${raw} is reported as an error naming the worker, and routing goes on`, async () => {
        const after = unique('after-non-object');
        h.ctl(bad.pid, 'raw', { text: `${raw}\n`, after: { action: after } });
        const err = await h.errorFor(bad.pid);
        assert.strictEqual(err.code, 'ERR_BAD_MESSAGE');
        await h.got(agent.pid, m => m.action === after, 10000, "the bad worker's next message");
        await roundTrip(h, agent, good);
      });
    }

    it('bytes that are not UTF-8 are reported as an error naming the worker, and routing goes on', async () => {
      const after = unique('after-not-utf8');
      const hex = Buffer.concat([ Buffer.from('{"action":"'), Buffer.from([ 0xff, 0xfe, 0xc3, 0x28 ]), Buffer.from('"}\n') ])
        .toString('hex');
      h.ctl(bad.pid, 'raw', { hex, after: { action: after } });
      const err = await h.errorFor(bad.pid);
      assert.strictEqual(err.code, 'ERR_BAD_MESSAGE');
      await h.got(agent.pid, m => m.action === after, 10000, "the bad worker's next message");
      await roundTrip(h, agent, good);
    });

    it('a flood of malformed lines is counted, and reported at the 1st, 2nd, 4th, 8th… line only', async () => {
      const after = unique('after-flood');
      h.ctl(bad.pid, 'raw', { text: 'garbage\n'.repeat(100), after: { action: after } });
      await h.got(agent.pid, m => m.action === after, 10000, "the bad worker's next message");
      const reports = h.all('error', e => e.pid === bad.pid && e.code === 'ERR_BAD_MESSAGE');
      assert.deepStrictEqual(reports.map(e => Number(/\((\d+) malformed/.exec(e.message)[1])), [ 1, 2, 4, 8, 16, 32, 64 ]);
      assert.strictEqual(h.pool.workers().find(w => w.pid === bad.pid).badLines, 100);
      await roundTrip(h, agent, good);
    });

    it('an empty line is not a message and does not stop the worker that sent it', async () => {
      const after = unique('after-empty');
      h.ctl(bad.pid, 'raw', { text: '\n\n', after: { action: after } });
      await h.got(agent.pid, m => m.action === after);
      await roundTrip(h, agent, good);
    });

    it('an unknown NODE_ internal message is ignored and reaches no worker', async () => {
      const after = unique('after-internal');
      h.ctl(bad.pid, 'raw', { text: '{"cmd":"NODE_BOGUS","action":"bogus"}\n', after: { action: after } });
      await h.got(agent.pid, m => m.action === after);
      await sleep(300);
      assert.deepStrictEqual(h.received(m => m.action === 'bogus'), []);
    });

    for (const [ sender, source ] of [[ 'the agent', 'server' ], [ 'an app worker', 'pipe' ]]) {
      it(`an fd nobody asked for from ${sender} is closed, reported with its pid, and its later messages flow`, async () => {
        const before = openSockets();
        const w = sender === 'the agent' ? agent : bad;
        const to = sender === 'the agent' ? good : agent;
        const after = unique('after-handle');
        h.ctl(w.pid, 'sendHandle', { source, msg: { action: unique('with-handle') }, after: { action: after } });
        const { inode } = await h.report('handle-inode', w.pid);
        assert.match(inode, /^socket:\[\d+\]$/);
        assert(!before.has(inode));
        const err = await h.errorFor(w.pid, 'ERR_UNEXPECTED_HANDLE');
        assert.strictEqual(err.pid, w.pid);
        const sent = await h.report('handle-sent', w.pid);
        assert.strictEqual(sent.error, null);
        await h.got(to.pid, m => m.action === after, 10000, "the worker's message after the handle");
        // the fd did not stay open in the master
        await waitUntil(() => !openSockets().has(inode), 2000, `${inode} to be closed in the master`);
        await roundTrip(h, agent, good);
      });
    }

    it('three handles in a row from one worker are each acknowledged, and its messages keep flowing', async () => {
      const after = unique('after-three-handles');
      h.ctl(agent.pid, 'sendHandle', { source: 'server', msg: { action: unique('h') } });
      h.ctl(agent.pid, 'sendHandle', { source: 'server', msg: { action: unique('h') } });
      h.ctl(agent.pid, 'sendHandle', { source: 'pipe', msg: { action: unique('h') }, after: { action: after } });
      await h.got(good.pid, m => m.action === after);
      await waitUntil(() => h.all('message', e => e.msg.action === 'handle-sent' && e.msg.data.pid === agent.pid).length === 3,
        5000, 'three acknowledged handles');
      for (const e of h.all('message', x => x.msg.action === 'handle-sent')) assert.strictEqual(e.msg.data.error, null);
      assert.strictEqual(h.all('error', e => e.pid === agent.pid && e.code === 'ERR_UNEXPECTED_HANDLE').length, 3);
    });

    it('a 10 MiB message from an app worker reaches the agent intact', async () => {
      const action = unique('ten-mib');
      h.ctl(bad.pid, 'sendBig', { bytes: 10 << 20, action, to: 'agent' });
      const sent = await h.report('sent', undefined, 30000);
      const got = await h.got(agent.pid, m => m.action === action, 30000, 'the 10 MiB message');
      assert.strictEqual(got.length, sent.length);
      assert.strictEqual(got.sha256, sent.sha256);
      assert(Buffer.byteLength(JSON.stringify(got.msg)) < 1000);
      await roundTrip(h, agent, good);
    });

    it('a 10 MiB message to the master arrives intact', async () => {
      const action = unique('ten-mib-master');
      const arrived = h.wait('message', e => e.msg.action === action, 30000);
      h.ctl(good.pid, 'sendBig', { bytes: 10 << 20, action, to: 'master' });
      const sent = await h.report('sent', good.pid, 30000);
      const { msg } = await arrived;
      assert.strictEqual(msg.data.length, sent.length);
      assert.strictEqual(crypto.createHash('sha256').update(msg.data).digest('hex'), sent.sha256);
    });

    it('U+2028, U+2029, emoji, escapes and lone surrogates in data arrive intact at another worker', async () => {
      const action = unique('unicode \u2028 😀');
      const data = {
        separators: 'line\u2028paragraph\u2029end',
        emoji: '😀👍🏽👨‍👩‍👧',
        cjk: '中文 日本語 한국어',
        escapes: 'quote " backslash \\ newline \n tab \t nul \u0000',
        lone: '\ud800 and \udfff',
        keys: { '\u2028': '😀' },
      };
      h.ctl(bad.pid, 'send', { msg: { action, data } });
      const got = await h.got(agent.pid, m => m.action === action);
      assert.deepStrictEqual(got.msg.data, data);
    });

    it('U+2028, U+2029 and emoji arrive intact at the master, and as a bare string', async () => {
      const action = unique('unicode-master');
      const data = 'a\u2028b\u2029c😀';
      const heard = h.wait('message', e => e.msg.action === action);
      h.ctl(bad.pid, 'send', { msg: { action, data, to: 'master' } });
      assert.strictEqual((await heard).msg.data, data);
      const bare = `${unique('bare')}\u2028😀`;
      h.ctl(bad.pid, 'send', { msg: bare });
      const got = await h.got(agent.pid, m => m.action === bare);
      assert.strictEqual(got.msg.data, bare);
    });

    it('a message split across many writes is reassembled', async () => {
      const action = unique('split');
      const line = JSON.stringify({ action, data: 'x'.repeat(200000) }) + '\n';
      // three raw writes; the master sees partial lines in between
      const third = Math.floor(line.length / 3);
      h.ctl(bad.pid, 'raw', { text: line.slice(0, third) });
      await sleep(100);
      h.ctl(bad.pid, 'raw', { text: line.slice(third, 2 * third) });
      await sleep(100);
      h.ctl(bad.pid, 'raw', { text: line.slice(2 * third) });
      const got = await h.got(agent.pid, m => m.action === action);
      assert.strictEqual(got.length, 200000);
    });

    it('a 100 MiB line is dropped under the default 64 MiB cap, and the worker goes on', async () => {
      const after = unique('after-100-mib');
      h.ctl(bad.pid, 'rawLong', { bytes: 100 << 20, after: { action: after } });
      const err = await h.errorFor(bad.pid, 'ERR_FRAME_TOO_BIG', 30000);
      assert(err.message.includes(String(64 << 20)), err.message);
      await h.got(agent.pid, m => m.action === after, 30000, "the worker's next message");
      assert.deepStrictEqual(h.received(m => m.action === 'long'), []);
      await roundTrip(h, agent, good);
    });

    it('a flood of 2000 malformed lines leaves the master serving everyone', async () => {
      const after = unique('after-flood');
      h.ctl(bad.pid, 'raw', { text: 'garbage\n'.repeat(2000), after: { action: after } });
      await h.got(agent.pid, m => m.action === after, 20000);
      assert(h.all('error', e => e.pid === bad.pid && e.code === 'ERR_BAD_MESSAGE').length >= 1);
      await roundTrip(h, agent, good);
    });
  });

  describe('a pool without an error listener', () => {
    let pool;

    afterEach(() => pool && pool.close());

    it('does not throw on bad input, and keeps routing', async () => {
      pool = new WorkerPool();
      const uncaught = [];
      const onUncaught = err => uncaught.push(err);
      process.on('uncaughtException', onUncaught);
      try {
        const { pid } = pool.forkApp({ exec: WORKER });
        const messages = [];
        pool.on('message', msg => messages.push(msg));
        await waitUntil(() => messages.some(m => m.action === 'ready'), 10000, 'ready');
        pool.sendToWorker(pid, { action: 'ctl', data: { op: 'raw', text: '{bad\n[1]\n', after: { action: 'fine', to: 'master' } } });
        await waitUntil(() => messages.some(m => m.action === 'fine'), 10000, 'the next message');
        await sleep(100);
        assert.deepStrictEqual(uncaught, []);
      } finally {
        process.removeListener('uncaughtException', onUncaught);
      }
    });
  });

  describe('with maxLineBytes 1 MiB', () => {
    beforeEach(() => start({ maxLineBytes: 1 << 20 }));

    it("a 2 MiB line is dropped with an error naming the worker, and the same worker's next message arrives", async () => {
      const after = unique('after-too-big');
      h.ctl(bad.pid, 'rawLong', { bytes: 2 << 20, after: { action: after, data: 'small' } });
      const err = await h.errorFor(bad.pid);
      assert.strictEqual(err.code, 'ERR_FRAME_TOO_BIG');
      assert.strictEqual(err.pid, bad.pid);
      const got = await h.got(agent.pid, m => m.action === after, 10000, "the worker's next message");
      assert.strictEqual(got.msg.data, 'small');
      await sleep(300);
      assert.deepStrictEqual(h.received(m => m.action === 'long'), []);
      await roundTrip(h, agent, good);
    });

    it('a 2 MiB message sent with process.send is dropped, and the next one arrives', async () => {
      const action = unique('too-big-send');
      const after = unique('after-too-big-send');
      h.ctl(bad.pid, 'sendBig', { bytes: 2 << 20, action, to: 'agent' });
      await h.errorFor(bad.pid, 'ERR_FRAME_TOO_BIG');
      h.ctl(bad.pid, 'send', { msg: { action: after } });
      await h.got(agent.pid, m => m.action === after);
      assert.deepStrictEqual(h.received(m => m.action === action), []);
    });

    it('the valid lines written around a 2 MiB line in the same write arrive', async () => {
      const before = unique('before-big');
      const behind = unique('behind-big');
      h.ctl(bad.pid, 'rawLong', { bytes: 2 << 20, before: { action: before }, behind: { action: behind } });
      await h.errorFor(bad.pid, 'ERR_FRAME_TOO_BIG');
      await h.got(agent.pid, m => m.action === before);
      await h.got(agent.pid, m => m.action === behind);
    });

    it('a line of exactly maxLineBytes bytes arrives, one byte more does not', async () => {
      const exact = unique('exact');
      const over = unique('over');
      h.ctl(bad.pid, 'rawLong', { bytes: (1 << 20) + 1, action: exact }); // + its \n
      await h.got(agent.pid, m => m.action === exact, 10000, 'the line of exactly the cap');
      h.ctl(bad.pid, 'rawLong', { bytes: (1 << 20) + 2, action: over, after: { action: `${over}-after` } });
      await h.errorFor(bad.pid, 'ERR_FRAME_TOO_BIG');
      await h.got(agent.pid, m => m.action === `${over}-after`);
      assert.deepStrictEqual(h.received(m => m.action === over), []);
    });

    it('a line just under the cap arrives', async () => {
      const after = unique('under-cap');
      h.ctl(bad.pid, 'rawLong', { bytes: (1 << 20) - 1, after: { action: after } });
      const got = await h.got(agent.pid, m => m.action === 'long', 10000, 'the line under the cap');
      assert.strictEqual(got.msg.from, 'app');
      await h.got(agent.pid, m => m.action === after);
    });
  });

  describe('a worker that stops reading its channel', () => {
    beforeEach(() => start({ queueBytes: 256 << 10, stallTimeout: 1000 }));

    /** Blocks `bad`, then sends `count` 16 KiB messages to every app worker. */
    async function flood(count) {
      h.ctl(bad.pid, 'block');
      await h.report('blocking', bad.pid);
      const action = unique('to-all-apps');
      const chunk = 'z'.repeat(16 << 10);
      for (let i = 0; i < count; i++) h.pool.send({ action, data: { i, chunk }, to: 'app' });
      return action;
    }

    it('has messages dropped, with an error naming it and droppedMessages counted', async () => {
      await flood(100);
      const err = await h.errorFor(bad.pid, 'ERR_QUEUE_FULL', 20000);
      assert.strictEqual(err.pid, bad.pid);
      const snapshot = h.pool.workers().find(w => w.pid === bad.pid);
      assert(snapshot.droppedMessages > 0, `droppedMessages ${snapshot.droppedMessages}`);
      await roundTrip(h, agent, good);
    });

    it('sendToWorker returns false once its queue is full', async () => {
      h.ctl(bad.pid, 'block');
      await h.report('blocking', bad.pid);
      const chunk = 'z'.repeat(16 << 10);
      let sent = 0;
      while (h.pool.sendToWorker(bad.pid, { action: 'fill', data: chunk })) {
        sent++;
        assert(sent < 10000, 'the queue never filled up');
        if (sent % 8 === 0) await sleep(5); // let the writer fill the socket first
      }
      assert(h.pool.workers().find(w => w.pid === bad.pid).queuedBytes > 0);
      assert(h.pool.sendToWorker(good.pid, { action: 'ctl', data: { op: 'send', msg: { action: 'still-fine' } } }));
      await h.got(agent.pid, m => m.action === 'still-fine');
    });

    it('does not hold up the messages of the app workers that read theirs', async () => {
      // 100 × 16 KiB: the stuck worker's socket and its 256 KiB queue fill up
      // after a few dozen; the reading worker must still get all 100 promptly,
      // not one per stallTimeout (1 s) as the stuck worker's queue times out.
      const action = await flood(100);
      const arrived = () => h.received(m => m.action === action).filter(g => g.pid === good.pid).length;
      await waitUntil(() => arrived() === 100, 8000, 'every message at the reading worker')
        .catch(err => {
          err.message += ` (${arrived()} of 100 arrived)`;
          throw err;
        });
    });
  });
});
