'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { once } = require('events');
const assert = require('assert');
const coffee = require('coffee');
const { defaultWorkerCount, cpuQuota, parseCpuMax } = require('../lib/worker_count');
const { getFilepath, waitFor } = require('./utils');

// a fake root: { 'proc/self/cgroup': text, … } written under a fresh directory
function fakeRoot(files) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'egg-cluster-rs-cgroup-'));
  for (const [ file, text ] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), text);
  }
  return root;
}

const V2_MOUNT = '30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n';
const V1_MOUNTS = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
].join('\n') + '\n';

function v2(cpuMax, cgroupPath = '/', more = {}) {
  return fakeRoot({
    'proc/self/mountinfo': V2_MOUNT,
    'proc/self/cgroup': `0::${cgroupPath}\n`,
    [path.join('sys/fs/cgroup', cgroupPath, 'cpu.max')]: cpuMax,
    ...more,
  });
}

describe('test/worker_count.test.js', () => {
  const roots = [];
  const track = root => {
    roots.push(root);
    return root;
  };
  after(() => {
    for (const root of roots) fs.rmSync(root, { recursive: true, force: true });
  });

  describe('cgroup v2', () => {
    it('a quota of 150000/100000 gives 2 workers on an 8-CPU machine', () => {
      const root = track(v2('150000 100000\n'));
      const chosen = defaultWorkerCount({ root, cpus: 8 });
      assert.strictEqual(chosen.count, 2);
      assert.strictEqual(chosen.rule, 'CPU quota 1.5 from cgroup v2 cpu.max "150000 100000", rounded up; 8 CPUs available');
    });

    it('"max" (no quota) gives the CPU count', () => {
      const root = track(v2('max 100000\n'));
      assert.deepStrictEqual(defaultWorkerCount({ root, cpus: 8 }), { count: 8, rule: '8 CPUs available, no CPU quota' });
      assert.strictEqual(defaultWorkerCount({ root }).count, os.availableParallelism());
    });

    it('a quota above the CPU count is bounded by the CPUs available', () => {
      const root = track(v2('1600000 100000\n'));
      const chosen = defaultWorkerCount({ root, cpus: 4 });
      assert.strictEqual(chosen.count, 4);
      assert.match(chosen.rule, /^4 CPUs available, within the CPU quota 16 from cgroup v2/);
    });

    it('a quota below one CPU still gives one worker', () => {
      const root = track(v2('20000 100000\n'));
      assert.strictEqual(defaultWorkerCount({ root, cpus: 8 }).count, 1);
    });

    it('the smallest quota along the path up to the root wins', () => {
      const root = track(v2('max 100000\n', '/kubepods/pod1/c1', {
        'sys/fs/cgroup/kubepods/pod1/cpu.max': '300000 100000\n',
        'sys/fs/cgroup/kubepods/cpu.max': '600000 100000\n',
      }));
      const chosen = defaultWorkerCount({ root, cpus: 16 });
      assert.strictEqual(chosen.count, 3);
      assert.match(chosen.rule, /"300000 100000"/);
    });
  });

  describe('cgroup v1', () => {
    function v1(quota, period, cgroupPath = '/') {
      const dir = path.join('sys/fs/cgroup/cpu,cpuacct', cgroupPath);
      return fakeRoot({
        'proc/self/mountinfo': V1_MOUNTS,
        'proc/self/cgroup': `4:memory:${cgroupPath}\n3:cpu,cpuacct:${cgroupPath}\n0::/\n`,
        [path.join(dir, 'cpu.cfs_quota_us')]: `${quota}\n`,
        [path.join(dir, 'cpu.cfs_period_us')]: `${period}\n`,
      });
    }

    it('cfs_quota_us / cfs_period_us, rounded up', () => {
      const root = track(v1(250000, 100000, '/docker/abc'));
      const chosen = defaultWorkerCount({ root, cpus: 8 });
      assert.strictEqual(chosen.count, 3);
      assert.strictEqual(chosen.rule, 'CPU quota 2.5 from cgroup v1 cpu.cfs_quota_us 250000 / cpu.cfs_period_us 100000, rounded up; 8 CPUs available');
    });

    it('a quota of -1 is no quota', () => {
      const root = track(v1(-1, 100000));
      assert.deepStrictEqual(defaultWorkerCount({ root, cpus: 6 }), { count: 6, rule: '6 CPUs available, no CPU quota' });
    });

    it('a v2 hierarchy without the cpu controller leaves the v1 quota in charge', () => {
      const root = track(fakeRoot({
        'proc/self/mountinfo': V1_MOUNTS + '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n',
        'proc/self/cgroup': '3:cpu,cpuacct:/\n0::/\n',
        'sys/fs/cgroup/unified/cgroup.controllers': '',
        'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '100000\n',
        'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
      }));
      assert.strictEqual(defaultWorkerCount({ root, cpus: 4 }).count, 1);
    });
  });

  it('no cgroup files at all (another OS) gives the CPU count', () => {
    const root = track(fakeRoot({}));
    assert.strictEqual(cpuQuota(root), null);
    assert.strictEqual(defaultWorkerCount({ root, cpus: 3 }).count, 3);
  });

  it('parses cpu.max and refuses nonsense', () => {
    assert.strictEqual(parseCpuMax('150000 100000'), 1.5);
    assert.strictEqual(parseCpuMax('50000'), 0.5);
    assert.strictEqual(parseCpuMax('max 100000'), null);
    assert.strictEqual(parseCpuMax('garbage'), null);
    assert.strictEqual(parseCpuMax('-5 100000'), null);
    assert.strictEqual(parseCpuMax(''), null);
  });

  it('a master started without workers forks the quota\'s count and logs the rule; an explicit workers wins', async () => {
    const root = track(v2('50000 100000\n'));
    const baseDir = getFilepath('apps/master-worker-started');
    const start = async (options, port) => {
      const proc = coffee.fork(getFilepath('start-cluster.js'), [ JSON.stringify({ baseDir, port, ...options }) ], {
        env: { ...process.env, EGG_CLUSTER_RS_TEST_CGROUP_ROOT: root },
      });
      try {
        await waitFor(() => /egg started on http:\/\/127\.0\.0\.1:\d+/.test(proc.stdout));
        return proc.stdout;
      } finally {
        proc.proc.kill('SIGTERM');
        await once(proc.proc, 'exit');
      }
    };

    const byDefault = await start({}, 17913);
    // on one CPU the CPU count and the quota agree, and the line says so
    assert.match(byDefault, /\[master\] app workers: 1, as no workers option is given: .*CPU quota 0\.5 from cgroup v2 cpu\.max "50000 100000"/);
    assert.strictEqual((byDefault.match(/app_worker#\d+:\d+ started at/g) || []).length, 1);

    const explicit = await start({ workers: 2 }, 17914);
    assert.doesNotMatch(explicit, /as no workers option is given/);
    assert.strictEqual((explicit.match(/app_worker#\d+:\d+ started at/g) || []).length, 2);
  });
});
