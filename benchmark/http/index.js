'use strict';

// npm run bench:http [-- --quick] [-- --duration=8] [-- --reps=2] [-- --connections=50] [-- --workers=2]
//
// HTTP throughput of a hello-world egg 3 app (benchmark/http/app) with 2 app workers, under
// egg-cluster 2.x (node_modules/egg-cluster, Node's cluster module: round robin by default,
// SCHED_NONE with NODE_CLUSTER_SCHED_POLICY=none) and under egg-cluster-rs with each scheduling
// policy (rr, none, reuseport), in the same run on the same machine. Two loads per cluster:
//
//   keep-alive   autocannon, N persistent connections (the usual HTTP benchmark; the master only
//                sees the N connects, after that workers serve on their own)
//   new conn     N concurrent clients, each request on a new connection (`Connection: close`):
//                every request goes through the accept path (the master's in rr)
//
// Reported per cluster: requests/s, p50/p99 latency, errors, ratio to egg-cluster (rr) on the same
// load, the master's CPU time per 1000 requests, and each worker's share of the requests (counted
// from the x-pid response header).
// All clusters run side by side (ports 17480…); short measurements rotate among them (rep 1 of
// every cluster, then rep 2, …), and the median rep (by req/s) is reported.

const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { fork } = require('child_process');
const autocannon = require('autocannon');

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const hit = args.find(a => a.startsWith(`--${name}=`));
  return hit ? Number(hit.split('=')[1]) : dflt;
};
const quick = args.includes('--quick');
const DURATION = arg('duration', quick ? 2 : 3); // seconds per measurement
const WARMUP = arg('warmup', quick ? 1 : 2); // seconds of each load on each cluster before the first rep
const REPS = arg('reps', quick ? 1 : 7);
const CONNECTIONS = arg('connections', 50);
const WORKERS = arg('workers', 2);
const PORT = arg('port', 17480);

const CLUSTERS = [
  { name: 'egg-cluster (rr)', impl: 'egg-cluster', policy: 'rr' },
  { name: 'egg-cluster (none)', impl: 'egg-cluster', policy: 'none' },
  { name: 'egg-cluster-rs rr', impl: 'egg-cluster-rs', policy: 'rr' },
  { name: 'egg-cluster-rs none', impl: 'egg-cluster-rs', policy: 'none' },
  { name: 'egg-cluster-rs reuseport', impl: 'egg-cluster-rs', policy: 'reuseport' },
];
const LOADS = [ 'keep-alive', 'new conn' ];
// --only=rr,none: just these policies (of both implementations)
const only = (args.find(a => a.startsWith('--only=')) || '').slice(7);
if (only) CLUSTERS.splice(0, CLUSTERS.length, ...CLUSTERS.filter(c => only.split(',').includes(c.policy)));

const TICK_MS = 1000 / 100; // USER_HZ

/**
 * utime + stime of a process, in ms (Linux /proc)
 * @param {Number} pid - process
 * @return {Number} ms
 */
function cpuMs(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch (_) {
    return NaN;
  }
}

const log = (...a) => console.log('[bench:http]', ...a);
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

async function startCluster(c, port) {
  const env = Object.assign({}, process.env, { EGG_SERVER_ENV: 'prod', NODE_ENV: 'production' });
  delete env.NODE_CLUSTER_SCHED_POLICY;
  if (c.impl === 'egg-cluster') env.NODE_CLUSTER_SCHED_POLICY = c.policy;
  const child = fork(path.join(__dirname, 'master.js'), [ c.impl, c.policy, port, WORKERS ], {
    execArgv: [],
    stdio: [ 'ignore', 'pipe', 'pipe', 'ipc' ],
    env,
  });
  let output = '';
  child.stdout.on('data', d => { output += d; });
  child.stderr.on('data', d => { output += d; });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${c.name}: no egg-ready in 60 s\n${output}`)), 60000);
    child.on('message', msg => {
      if (msg && msg.action === 'egg-ready') {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', code => reject(new Error(`${c.name}: master exited ${code}\n${output}`)));
  });
  return child;
}

async function stopCluster(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise(resolve => child.once('exit', resolve));
  child.kill('SIGTERM');
  await Promise.race([ exited, sleep(15000) ]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/**
 * autocannon with persistent connections; counts x-pid of every response
 * @param {Number} port - app port
 * @param {Number} seconds - how long
 * @return {Promise<Object>} rps, total, p50, p99, errors, counts
 */
function keepAlive(port, seconds) {
  const counts = new Map();
  return new Promise((resolve, reject) => {
    autocannon({
      url: `http://127.0.0.1:${port}`,
      connections: CONNECTIONS,
      duration: seconds,
      requests: [{
        method: 'GET',
        path: '/',
        onResponse: (status, body, context, headers) => {
          const pid = headers && headers['x-pid'];
          counts.set(pid, (counts.get(pid) || 0) + 1);
        },
      }],
    }, (err, r) => {
      if (err) return reject(err);
      resolve({
        rps: r.requests.average,
        total: r.requests.total,
        p50: r.latency.p50,
        p99: r.latency.p99,
        errors: r.errors + r.timeouts + r.non2xx,
        counts,
      });
    });
  });
}

const REQUEST = Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');

/**
 * CONNECTIONS closed-loop clients, each request on a new connection that the server closes
 * @param {Number} port - app port
 * @param {Number} seconds - how long
 * @return {Promise<Object>} rps, total, p50, p99, errors, counts
 */
async function newConn(port, seconds) {
  const counts = new Map();
  const latencies = [];
  let errors = 0;
  const t0 = Date.now();
  const end = t0 + seconds * 1000;
  const one = () => new Promise(resolve => {
    const start = process.hrtime.bigint();
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    let failed = false;
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    socket.setTimeout(10000, () => socket.destroy(new Error('timeout')));
    socket.on('connect', () => socket.write(REQUEST));
    socket.on('data', d => { text += d; });
    socket.on('error', () => { failed = true; });
    socket.on('close', () => {
      const status = /^HTTP\/1\.1 (\d+)/.exec(text);
      const pid = /\r\nx-pid: (\d+)\r\n/i.exec(text);
      if (failed || !status || status[1] !== '200' || !pid) {
        errors++;
      } else {
        latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
        counts.set(pid[1], (counts.get(pid[1]) || 0) + 1);
      }
      resolve();
    });
  });
  const client = async () => {
    while (Date.now() < end) await one();
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, client));
  const ms = Date.now() - t0;
  latencies.sort((a, b) => a - b);
  const pct = q => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] : NaN);
  return { rps: latencies.length * 1000 / ms, total: latencies.length, p50: pct(0.5), p99: pct(0.99), errors, counts };
}

function shareText(counts) {
  const total = [ ...counts.values() ].reduce((a, b) => a + b, 0) || 1;
  return [ ...counts.values() ].sort((a, b) => b - a).map(n => `${(n * 100 / total).toFixed(0)}%`).join(' / ');
}

const median = list => {
  const sorted = list.slice().sort((a, b) => a.rps - b.rps);
  return sorted[Math.floor((sorted.length - 1) / 2)];
};

async function main() {
  log(`node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0].model}), load average ${os.loadavg().map(n => n.toFixed(1)).join(' ')}`);
  log(`${WORKERS} app workers, ${CONNECTIONS} connections, ${DURATION}s per measurement, ${REPS} rep(s), ports ${PORT}…`);
  const results = new Map(); // `${cluster}|${load}` → [run]
  // every cluster runs for the whole benchmark, each on its own port; an idle one costs no CPU.
  // Short measurements rotate among them, so a change in the machine's other load hits all alike
  const children = [];
  try {
    for (const [ i, c ] of CLUSTERS.entries()) {
      c.port = PORT + i;
      const child = await startCluster(c, c.port);
      children.push(child);
      c.pid = child.pid;
      for (const load of LOADS) await (load === 'keep-alive' ? keepAlive : newConn)(c.port, WARMUP);
    }
    for (let rep = 1; rep <= REPS; rep++) {
      for (const load of LOADS) {
        // rotate the order every rep
        const order = CLUSTERS.map((_, i) => CLUSTERS[(i + rep) % CLUSTERS.length]);
        for (const c of order) {
          const run = load === 'keep-alive' ? keepAlive : newConn;
          await run(c.port, 0.5);
          const cpu0 = cpuMs(c.pid);
          const r = await run(c.port, DURATION);
          // the master's CPU time per 1000 requests: how much work it does in the request path,
          // a figure the machine's other load hardly moves
          r.masterCpu = (cpuMs(c.pid) - cpu0) * 1000 / r.total;
          if (r.counts.size !== WORKERS) log(`  note: ${c.name} ${load}: ${r.counts.size} of ${WORKERS} workers answered`);
          const key = `${c.name}|${load}`;
          if (!results.has(key)) results.set(key, []);
          results.get(key).push(r);
          log(`rep ${rep} ${c.name.padEnd(26)} ${load.padEnd(10)} ${r.rps.toFixed(0).padStart(6)} req/s  p50 ${r.p50.toFixed(1)} ms  p99 ${r.p99.toFixed(1)} ms  errors ${r.errors}  master CPU ${r.masterCpu.toFixed(1)} ms/1k req  workers ${shareText(r.counts)}`);
        }
      }
    }
  } finally {
    await Promise.all(children.map(stopCluster));
  }

  const lines = [];
  lines.push(`node ${process.version}, ${os.cpus().length} CPUs, ${WORKERS} app workers, ${CONNECTIONS} connections, ${DURATION}s × ${REPS} rep(s) (median rep), load average at the end ${os.loadavg().map(n => n.toFixed(1)).join(' ')}`);
  lines.push('');
  lines.push(`| load | cluster | req/s | vs ${CLUSTERS[0].name} | p50 ms | p99 ms | p99 vs ${CLUSTERS[0].name} | master CPU ms / 1k req | errors | share per worker |`);
  lines.push('|---|---|--:|--:|--:|--:|--:|--:|--:|---|');
  for (const load of LOADS) {
    const base = median(results.get(`${CLUSTERS[0].name}|${load}`));
    for (const c of CLUSTERS) {
      const r = median(results.get(`${c.name}|${load}`));
      lines.push(`| ${load} | ${c.name} | ${r.rps.toFixed(0)} | ${(r.rps / base.rps).toFixed(2)}× | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${(r.p99 / base.p99).toFixed(2)}× | ${r.masterCpu.toFixed(1)} | ${r.errors} | ${shareText(r.counts)} |`);
    }
  }
  const table = lines.join('\n');
  console.log(`\n${table}\n`);
  const out = path.join(__dirname, 'results.md');
  fs.writeFileSync(out, `# npm run bench:http (${new Date().toISOString()})\n\n${table}\n`);
  log(`written to ${path.relative(process.cwd(), out)}`);
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
