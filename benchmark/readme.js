'use strict';

// node benchmark/readme.js [results.json]: writes the "Benchmarks" section of README.md
// (between the bench markers, appended at the end the first time) from a results file.
const fs = require('fs');
const path = require('path');
const { build } = require('./report');

const src = process.argv[2] || path.join(__dirname, 'results', 'latest.json');
const results = JSON.parse(fs.readFileSync(src, 'utf8'));
const readme = path.join(__dirname, '..', 'README.md');
const START = '<!-- bench:start -->';
const END = '<!-- bench:end -->';
const m = results.machine;
const load = m.loadavg ? ` Load average when it started: ${m.loadavg.map(x => x.toFixed(1)).join(', ')} (the machine is shared; expect noise).` : '';
const section = `${START}
## Benchmarks

\`npm run bench\` (about ${Math.ceil(results.durationSec / 60)} minutes; \`npm run bench:quick\` for a smoke run) runs egg-cluster ${results.versions.eggCluster} and
egg-cluster-rs in the same run on the same egg 3 app (\`benchmark/app\`), with 2 and then 4 app
workers. Each master is a child of the driver (\`benchmark/master.js\`, which calls the
implementation's own \`startCluster\`); all traffic goes through egg's own \`app.messenger\` /
\`agent.messenger\` in the workers, and the workers report to the driver \`to: 'parent'\`. Both
clusters stay up side by side and the repetitions take turns, so the background load of a shared
machine falls on both alike. Every message carries a per-sender sequence number and is counted
on arrival: a lost or reordered message fails the run (\`BENCH_INJECT=drop\` or \`=reorder npm run bench:quick\`
shows it). The "limit" is plain Node processes
talking directly over Node's IPC (\`child_process.fork\`, no master): the parent plays the agent
and sends each message to each child itself. Bursts: ${results.config.small} messages of ~100 B
(from the agent to all apps; from each app to the agent), ${results.config.b64} × 64 KiB and ${results.config.b1m} × 1 MiB from the agent
to all apps, ${results.config.reps} repetitions (median); ${results.config.rtt} round trips app → agent → same app by pid, one in
flight, masters and workers pinned to CPU 0 (\`taskset\`); master CPU is utime+stime of all
the master's threads per delivered message, read in ns from \`/proc/<pid>/task/*/schedstat\`
(\`/proc/<pid>/stat\` counts 10 ms ticks, too coarse for ~30 ms of CPU per burst; a fan-out to
N apps is N deliveries); start →
egg-ready and RSS after start are medians of ${results.config.starts} starts; the peak RSS is the master's VmHWM
(reset before) during ${results.config.hwm64PerApp} × 64 KiB from each app to the agent, the highest of ${results.config.starts} bursts, all delivered.
egg-cluster-rs runs from a copy of the package taken when the run starts (\`benchmark/.snapshot/\`), so a
rebuild during the run cannot mix builds. Raw numbers: \`benchmark/results/latest.json\`.

Measured ${results.date.slice(0, 10)} on ${m.cpus} cores (${m.model}), Node ${m.node}.${load}

${build(results).markdown}
![egg-cluster-rs vs egg-cluster](benchmark/results/chart.svg)
${END}
`;
let text = fs.readFileSync(readme, 'utf8');
const a = text.indexOf(START);
const b = text.indexOf(END);
text = a >= 0 && b > a ? text.slice(0, a) + section.trimEnd() + text.slice(b + END.length) : `${text.trimEnd()}\n\n${section}`;
fs.writeFileSync(readme, text);
console.log(`README.md: Benchmarks section from ${path.relative(process.cwd(), src)}`);
