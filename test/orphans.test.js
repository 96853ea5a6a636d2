'use strict';

const assert = require('assert');
const { MasterProcess, alive, sleep, waitUntil } = require('./fixtures/pool/harness');

describe('test/orphans.test.js', () => {
  let m;

  afterEach(async () => {
    if (!m) return;
    m.kill('SIGKILL');
    // never leave a child behind, whatever the test found
    for (const pid of m.pids || []) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (_) {
        // gone, as it should be
      }
    }
    m = null;
  });

  async function startMaster(config) {
    m = new MasterProcess(config);
    const info = await m.ready();
    m.pids = [ info.agent.pid, ...info.apps.map(a => a.pid) ];
    return info;
  }

  /** Resolves with how long it took every pid to be gone. */
  async function goneWithin(pids, ms) {
    const start = Date.now();
    await waitUntil(() => pids.every(pid => !alive(pid)), ms,
      `every child to be gone (alive: ${pids.filter(alive).join(', ') || 'none'})`)
      .catch(err => {
        err.message += `; still alive: ${pids.filter(alive).join(', ')}`;
        throw err;
      });
    return Date.now() - start;
  }

  it('every child of a SIGKILLed master is gone within 1 s, a blocked app worker too', async () => {
    const info = await startMaster({ apps: 3 });
    const blocked = info.apps[1].pid;
    m.ctl(blocked, 'block');
    await m.heard('blocking', d => d.pid === blocked);
    assert(m.pids.every(alive));
    m.kill('SIGKILL');
    await m.wait('exit');
    await goneWithin(m.pids, 1000);
  });

  it("a SIGKILLed master's agent, ignoring SIGTERM, is gone within 1 s", async () => {
    const info = await startMaster({ apps: 1 });
    m.ctl(info.agent.pid, 'ignoreSigterm');
    await m.heard('ignoring-sigterm', d => d.pid === info.agent.pid);
    m.kill('SIGKILL');
    await m.wait('exit');
    await goneWithin(m.pids, 1000);
  });

  it('children forked just before the master is SIGKILLed are gone within 1 s', async () => {
    for (let round = 0; round < 3; round++) {
      m = new MasterProcess({ apps: 3, dieAfterFork: true });
      const forked = await m.wait('message', x => x.action === 'forked');
      m.pids = forked.data;
      await m.wait('exit');
      await goneWithin(m.pids, 1000);
    }
  });

  it('with orphanGrace 0 (no watchdog) and no deathSignal a blocked worker outlives its SIGKILLed master', async () => {
    const info = await startMaster({ apps: 1, pool: { deathSignal: '', orphanGrace: 0 } });
    const blocked = info.apps[0].pid;
    m.ctl(blocked, 'block');
    await m.heard('blocking', d => d.pid === blocked);
    m.kill('SIGKILL');
    await m.wait('exit');
    await sleep(1000);
    assert(alive(blocked), 'the blocked worker is still running');
  });

  it("with deathSignal 'SIGTERM' and no watchdog a blocked worker of a SIGKILLed master is gone", async () => {
    const info = await startMaster({ apps: 1, pool: { deathSignal: 'SIGTERM', orphanGrace: 0 } });
    const blocked = info.apps[0].pid;
    m.ctl(blocked, 'block');
    await m.heard('blocking', d => d.pid === blocked);
    m.kill('SIGKILL');
    await m.wait('exit');
    await goneWithin([ blocked ], 1000);
  });

  it('children of a master that exits normally are gone too', async () => {
    const info = await startMaster({ apps: 2 });
    m.ctl(info.apps[0].pid, 'block');
    await m.heard('blocking', d => d.pid === info.apps[0].pid);
    // the master script closes its pool and exits when its parent disconnects
    m.child.disconnect();
    const exit = await m.wait('exit');
    assert.strictEqual(exit.code, 0);
    await goneWithin(m.pids, 1000);
  });
});
