'use strict';

// Small helpers shared by the driver and the limit runner.
const fs = require('fs');
const os = require('os');
const { execFileSync } = require('child_process');

const CLK_TCK = 100; // getconf CLK_TCK on Linux x86-64
const now = () => Number(process.hrtime.bigint()) / 1e3; // µs, CLOCK_MONOTONIC
const sleep = ms => new Promise(r => setTimeout(r, ms));

/**
 * utime + stime of a whole process (all its threads), in µs
 * @param pid
 */
function cpuUs(pid) {
  // utime+stime at nanosecond resolution: the scheduler's run time of every thread of the process
  // (/proc/<pid>/task/*/schedstat, first field). /proc/<pid>/stat counts the same time in clock
  // ticks (10 ms), too coarse for a master that spends ~30 ms on a whole burst.
  try {
    let ns = 0;
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch { /* the thread ended meanwhile */ }
    }
    if (ns > 0) return ns / 1e3;
  } catch { /* no schedstat: clock ticks below */ }
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 1e6 / CLK_TCK; // fields 14 and 15
}

/**
 * VmRSS / VmHWM of a process in KiB
 * @param pid
 */
function mem(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = k => Number((s.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) || [])[1]);
  return { rss: get('VmRSS'), hwm: get('VmHWM') };
}

/**
 * reset VmHWM to the current RSS (Linux: echo 5 > /proc/<pid>/clear_refs)
 * @param pid
 */
function resetPeak(pid) {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

const allCpus = `0-${os.cpus().length - 1}`;
/**
 * set the CPU affinity of every thread of each pid (taskset -a -p -c <cpus> <pid>)
 * @param pids
 * @param cpus
 */
function pin(pids, cpus) {
  for (const pid of pids) execFileSync('taskset', [ '-a', '-p', '-c', cpus, String(pid) ], { stdio: 'ignore' });
}

const median = xs => {
  const s = [ ...xs ].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * Freezes egg-cluster-rs for one run: copies the package's files (index.js, binding.js, lib/,
 * the built .node) to benchmark/.snapshot/egg-cluster-rs, so that a rebuild or an edit of the
 * work tree during a long run cannot mix two builds into one table. Dependencies still
 * resolve from the repository's node_modules (the copy lives under it).
 * @param {string} root - the repository
 * @return {{ dir: string, files: number, addon: string, sha256: string }} -
 */
function snapshot(root) {
  const crypto = require('crypto');
  const path = require('path');
  const dir = path.join(__dirname, '.snapshot', 'egg-cluster-rs');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const pkg = require(path.join(root, 'package.json'));
  let files = 0;
  for (const f of [ 'package.json', ...pkg.files ]) {
    const names = f.includes('*') ? fs.readdirSync(root).filter(n => n.endsWith(f.replace('*', ''))) : [ f ];
    for (const n of names) {
      if (!fs.existsSync(path.join(root, n))) continue;
      fs.cpSync(path.join(root, n), path.join(dir, n), { recursive: true });
      files++;
    }
  }
  const addon = fs.readdirSync(dir).find(n => n.endsWith('.node'));
  const sha256 = addon ? crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, addon))).digest('hex') : null;
  return { dir, files, addon, sha256 };
}

module.exports = { snapshot, CLK_TCK, now, sleep, cpuUs, mem, resetPeak, pin, allCpus, median };
