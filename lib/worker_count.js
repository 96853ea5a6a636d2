'use strict';

/**
 * How many app workers to fork when `workers` is not given.
 *
 * egg-cluster forks `os.cpus().length`, which in a container is the host's CPU count
 * (eggjs/egg#4649): a pod limited to 2 CPUs on a 64-core node forks 64 workers. Here the count is
 * the CPUs this process may run on (`os.availableParallelism()`, which honours a cpuset), lowered
 * to the CPU quota of its cgroup where there is one: cgroup v2 `cpu.max`, or v1
 * `cpu.cfs_quota_us` / `cpu.cfs_period_us`, the smallest along the path from the process's cgroup
 * up to the root of the hierarchy, rounded up, at least 1.
 *
 * Only Linux has cgroups; elsewhere the files are missing and the rule is the CPU count. Every
 * file read goes through `root` so that tests can point it at a fake tree.
 */

const fs = require('fs');
const os = require('os');
const path = require('path');

function readText(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/**
 * The cgroup mounts of this process (/proc/self/mountinfo): `{ version, root, mountPoint,
 * controllers }`, v1 mounts with the controllers of their super options.
 * @param {string} text - mountinfo
 * @return {Array<Object>} the mounts
 */
function cgroupMounts(text) {
  const mounts = [];
  for (const line of (text || '').split('\n')) {
    // <id> <parent> <major:minor> <root> <mount point> <options> [optional…] - <type> <source> <super options>
    const [ head, tail ] = line.split(' - ');
    if (!tail) continue;
    const fields = head.split(' ');
    const [ type, , superOptions = '' ] = tail.split(' ');
    if (type !== 'cgroup' && type !== 'cgroup2') continue;
    mounts.push({
      version: type === 'cgroup2' ? 2 : 1,
      root: unescapeMountPath(fields[3]),
      mountPoint: unescapeMountPath(fields[4]),
      controllers: type === 'cgroup' ? superOptions.split(',') : [],
    });
  }
  return mounts;
}

// mountinfo writes a space, tab, newline and backslash in a path as an octal escape
function unescapeMountPath(p) {
  return (p || '').replace(/\\([0-7]{3})/g, (_, octal) => String.fromCharCode(parseInt(octal, 8)));
}

/**
 * The cgroup paths of this process (/proc/self/cgroup): `{ v2, v1: Map<controller, path> }`.
 * @param {string} text - /proc/self/cgroup
 * @return {Object} the paths
 */
function cgroupPaths(text) {
  const paths = { v2: null, v1: new Map() };
  for (const line of (text || '').split('\n')) {
    const match = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!match) continue;
    if (match[1] === '0' && match[2] === '') {
      paths.v2 = match[3];
    } else {
      for (const controller of match[2].split(',')) paths.v1.set(controller, match[3]);
    }
  }
  return paths;
}

/**
 * The directories from the process's cgroup up to the mount point, deepest first. A cgroup path
 * outside the mount's root (another namespace's view) starts at the mount point.
 * @param {Object} mount - from cgroupMounts
 * @param {string} cgroupPath - from cgroupPaths
 * @param {string} root - the fake root in tests, '/' otherwise
 * @return {Array<string>} directories
 */
function cgroupDirs(mount, cgroupPath, root) {
  let relative = '/';
  if (mount.root === '/') {
    relative = cgroupPath;
  } else if (cgroupPath === mount.root || cgroupPath.startsWith(mount.root + '/')) {
    relative = cgroupPath.slice(mount.root.length) || '/';
  }
  const dirs = [];
  const parts = relative.split('/').filter(Boolean);
  for (let i = parts.length; i >= 0; i--) {
    dirs.push(path.join(root, mount.mountPoint, ...parts.slice(0, i)));
  }
  return dirs;
}

/**
 * `cpu.max` ("max 100000" or "150000 100000"): the quota in CPUs, or null for none.
 * @param {string} text - the file
 * @return {number|null} CPUs
 */
function parseCpuMax(text) {
  const [ quota, period ] = (text || '').trim().split(/\s+/);
  if (!quota || quota === 'max') return null;
  return cpusOf(Number(quota), period === undefined ? 100000 : Number(period));
}

function cpusOf(quota, period) {
  if (!Number.isFinite(quota) || !Number.isFinite(period) || quota <= 0 || period <= 0) return null;
  return quota / period;
}

/**
 * The smallest CPU quota along the cgroup path, with where it was read.
 * @param {string} [root] - '/' (tests pass a fake tree)
 * @return {Object|null} `{ cpus, source }`, null when nothing limits the CPU time
 */
function cpuQuota(root = '/') {
  const mounts = cgroupMounts(readText(path.join(root, 'proc/self/mountinfo')));
  const paths = cgroupPaths(readText(path.join(root, 'proc/self/cgroup')));
  let best = null;
  const consider = (cpus, source) => {
    if (cpus !== null && (!best || cpus < best.cpus)) best = { cpus, source };
  };

  const v2 = mounts.find(m => m.version === 2);
  if (v2 && paths.v2 !== null) {
    for (const dir of cgroupDirs(v2, paths.v2, root)) {
      const text = readText(path.join(dir, 'cpu.max'));
      if (text !== null) consider(parseCpuMax(text), `cgroup v2 cpu.max "${text.trim()}"`);
    }
  }
  const v1 = mounts.find(m => m.version === 1 && m.controllers.includes('cpu'));
  if (v1 && paths.v1.has('cpu')) {
    for (const dir of cgroupDirs(v1, paths.v1.get('cpu'), root)) {
      const quota = readText(path.join(dir, 'cpu.cfs_quota_us'));
      const period = readText(path.join(dir, 'cpu.cfs_period_us'));
      if (quota === null || period === null) continue;
      consider(cpusOf(Number(quota), Number(period)),
        `cgroup v1 cpu.cfs_quota_us ${quota.trim()} / cpu.cfs_period_us ${period.trim()}`);
    }
  }
  return best;
}

function availableCpus() {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

/**
 * The default number of app workers and the rule that chose it.
 * @param {Object} [opts] - `{ root, cpus }`: a fake cgroup tree and CPU count (tests)
 * @return {Object} `{ count, rule }`
 */
function defaultWorkerCount(opts = {}) {
  const cpus = opts.cpus || availableCpus();
  const quota = cpuQuota(opts.root || '/');
  if (!quota) return { count: cpus, rule: `${cpus} CPUs available, no CPU quota` };
  const fromQuota = Math.max(1, Math.ceil(quota.cpus));
  if (fromQuota >= cpus) {
    return { count: cpus, rule: `${cpus} CPUs available, within the CPU quota ${quota.cpus} from ${quota.source}` };
  }
  return { count: fromQuota, rule: `CPU quota ${quota.cpus} from ${quota.source}, rounded up; ${cpus} CPUs available` };
}

module.exports = { defaultWorkerCount, cpuQuota, parseCpuMax };
