// A TypeScript consumer of egg-cluster-rs's public types (index.d.ts),
// compiled with `tsc --strict --noEmit` by test/types.test.js. Every
// `@ts-expect-error` is a misuse the types must refuse.

import { EventEmitter } from 'events';
import {
  startCluster,
  Master,
  ClusterAgentWorkerError,
  ClusterWorkerExceptionError,
  ReloadError,
  ReloadResult,
  MessageEnvelope,
  PoolWorker,
  PoolError,
  WorkerRef,
  WorkerSnapshot,
  ListeningAddress,
  ClusterOptions,
  MasterOptions,
  ClusterHTTPSSecureOptions,
  ClusterStartMode,
  ClusterMetrics,
  WorkerMetrics,
  MetricsAddress,
} from '../..';
import { WorkerPool, Messenger, WorkerMessenger } from '../../core';

// ---- WorkerPool ----
const pool = new WorkerPool({ maxLineBytes: 1 << 20, queueBytes: 1 << 24, stallTimeout: 500, schedulingPolicy: 'rr', deathSignal: 'SIGKILL', orphanGrace: 400 });
const noDeath = new WorkerPool({ deathSignal: '' });
noDeath.close();
const policy: 'rr' | 'none' | 'reuseport' = pool.schedulingPolicy;

const agent: WorkerRef = pool.forkAgent({ exec: '/path/agent.js', args: [ 'a', 1 ], execArgv: [], env: process.env, cwd: '/' });
const app: WorkerRef = pool.forkApp({ exec: '/path/app.js', execPath: process.execPath });
const ids: number[] = [ agent.id, app.id, agent.pid, app.pid ];

pool.send({ action: 'hi', data: { n: 1 }, to: 'app' }).send({ action: 'x', receiverPid: app.pid });
const chosen: 'master' | 'parent' | 'agent' | 'app' | null = pool.route({ action: 'y', receiverWorkerId: app.pid });
const queued: boolean = pool.sendToWorker(app.pid, { anything: [ 1, 2 ] });
pool.disconnect(app.pid);
const signalled: boolean = pool.kill(app.pid, 'SIGTERM');
const done: Promise<void> = pool.terminate(app.pid, 5000);
const snapshot: WorkerSnapshot[] = pool.workers();
const first = snapshot[0];
const fields: [number, number, string, string, boolean, number, number, number] = [
  first.id, first.pid, first.kind, first.state, first.exitedAfterDisconnect, first.droppedMessages, first.queuedBytes,
  first.badLines,
];
const maybe: PoolWorker | undefined = pool.get(app.pid);
if (maybe) {
  const state: 'starting' | 'online' | 'listening' | 'disconnected' | 'dead' = maybe.state;
  const kind: 'agent' | 'app' = maybe.kind;
}

pool.on('fork', (w: PoolWorker) => w.pid);
pool.on('online', w => w.id);
pool.on('disconnect', w => w.exitedAfterDisconnect);
pool.on('listening', (w: PoolWorker, address: ListeningAddress) => address.port);
pool.on('exit', (w: PoolWorker, code: number | null, signal: string | null) => [ w.exitCode, code, signal ]);
pool.on('message', (msg: MessageEnvelope, from: PoolWorker | string) => msg.action);
pool.on('parent', (msg: MessageEnvelope) => msg.data);
pool.on('error', (err: PoolError) => [ err.code, err.pid, err.id, err.message ]);
const figures: ClusterMetrics | null = pool.metrics();
if (figures) {
  const w: WorkerMetrics = figures.workers[0];
  const labels: [number, 'agent' | 'app', number | undefined, number | undefined, number] = [ w.pid, w.kind, w.slot, w.restarts, w.uptime ];
  const flows: number[] = [ w.messagesIn, w.bytesIn, w.messagesOut, w.bytesOut, w.dropped.queueFull, w.dropped.targetGone, w.badLines, w.queueBytes ];
  const totals: number[] = [ figures.total.relaysPerSecond, figures.total.reforks, figures.total.dropped.masterBacklog, figures.master.rss, figures.master.cpuUser ];
  // @ts-expect-error a count is a number
  const wrong: string = w.messagesIn;
}
const address: MetricsAddress | null = pool.metricsAddress();
new WorkerPool({ metrics: { port: 0, host: '127.0.0.1' } }).close();
// @ts-expect-error the port is a number
new WorkerPool({ metrics: { port: '9464' } });
pool.close();

// @ts-expect-error exec is required
pool.forkApp({});
// @ts-expect-error not a scheduling policy
new WorkerPool({ schedulingPolicy: 'random' });
// @ts-expect-error not a signal
pool.kill(app.pid, 'SIGNOPE');
// @ts-expect-error an envelope needs an action
pool.send({ data: 1 });

// ---- Messenger (master side) ----
const hub = new EventEmitter();
const messenger = new Messenger(hub, pool);
const same: Messenger = messenger
  .send({ action: 'a', data: 1, to: 'agent', from: 'master' })
  .sendToApp('b', { x: 1 })
  .sendToAgent('c')
  .broadcast('d', [ 1 ])
  .sendTo(app.pid, 'e', 'f')
  .sendTo(String(app.pid), 'e')
  .sendRandom('g')
  .sendToMaster({ action: 'h' })
  .sendToParent({ action: 'i', receiverWorkerId: '1' });
const hasParent: boolean = messenger.hasParent;
const masterEmitter: EventEmitter = messenger.master;
messenger.close();

// ---- WorkerMessenger (worker side) ----
const wm = new WorkerMessenger();
const pid: string = wm.pid;
const opids: Array<number | string> = wm.opids;
wm.send('a', 1, 'app').sendToApp('b').sendToAgent('c', {}).sendToMaster('d').sendToParent('e')
  .broadcast('f').sendTo(1234, 'g').sendRandom('h');
wm.on('message', (msg: MessageEnvelope) => msg.from);
wm.on('egg-ready', (data: { port: number }) => data.port);
wm.close();

// ---- Master and startCluster ----
const options: ClusterOptions = {
  framework: 'egg',
  baseDir: '/app',
  workers: 2,
  port: 7001,
  https: { key: 'k', cert: 'c' },
  require: [ 'a' ],
  sticky: false,
  schedulingPolicy: 'none',
  metrics: { port: 9464 },
};
const started: Promise<void> = startCluster(options);
startCluster(options, (err?: Error) => {
  if (err) throw err;
});
const masterOptions: MasterOptions = { ...options, clusterPort: 7777, stickyWorkerPort: 7778 };
const tls: ClusterHTTPSSecureOptions = { key: '/k', cert: '/c', passphrase: 'p' };
const mode: ClusterStartMode = 'process';
const agentError = new ClusterAgentWorkerError(1, 123, 'started', new Error('boom'));
const agentErrorFields: [number, number | undefined, string] = [ agentError.id, agentError.workerId, agentError.status ];
const exception = new ClusterWorkerExceptionError(0, 2);
const alive: number = exception.count.agent + exception.count.worker;
const master = new Master(options);
master.on('agent-start', () => undefined);
master.on('app-exit', (data: any) => data);
const ready: Promise<void> = master.ready();
master.ready((err?: Error) => undefined);
const closed: Promise<void> = master.close();
const isProduction: boolean = master.isProduction;
const mm: Messenger = master.messenger;
const emitter: EventEmitter = master;
const masterFigures: ClusterMetrics | null = master.metrics();
const masterMetricsAt: MetricsAddress | null = master.metricsAddress();
const reloaded: Promise<ReloadResult> = master.reload({ agent: true, startTimeout: 60000 });
reloaded.then(r => r.slots.map(slot => slot.newPid - slot.oldPid + slot.ms), (err: ReloadError) => err.code);
// @ts-expect-error agent is a boolean
master.reload({ agent: 'yes' });

// @ts-expect-error workers is a number or a numeric string, not an object
new Master({ workers: { n: 2 } });
// @ts-expect-error a start mode is 'process' or 'worker_threads'
startCluster({ startMode: 'threads' });

export { policy, ids, chosen, queued, signalled, done, fields, same, hasParent, masterEmitter, pid, opids, ready, closed, isProduction, mm, emitter, reloaded, started, masterOptions, tls, mode, agentErrorFields, alive, address, masterFigures, masterMetricsAt };
