// egg-cluster-rs's own classes: require('egg-cluster-rs/core')
import { EventEmitter } from 'events';
export type WorkerKind = 'agent' | 'app';
export type WorkerState = 'starting' | 'online' | 'listening' | 'disconnected' | 'dead';
export type SchedulingPolicy = 'rr' | 'none' | 'reuseport';

/** An egg message envelope. */
export interface MessageEnvelope<T = any> {
  action: string;
  data?: T;
  to?: 'master' | 'parent' | 'agent' | 'app' | string;
  from?: 'master' | 'parent' | 'agent' | 'app' | string;
  receiverPid?: string | number;
  /** egg 4's name for `receiverPid`. */
  receiverWorkerId?: string | number;
  [key: string]: unknown;
}

export interface WorkerPoolOptions {
  /** Longest line accepted from a worker, in bytes (default 64 MiB). */
  maxLineBytes?: number;
  /** Bytes that may wait in one worker's outbound queue (default 2 MiB). */
  queueBytes?: number;
  /** Milliseconds a sender waits for room in a full queue before a drop (default 10000). */
  stallTimeout?: number;
  /** How app workers' listen sockets are shared (default `NODE_CLUSTER_SCHED_POLICY` or 'rr'). */
  schedulingPolicy?: SchedulingPolicy;
  /** Signal every child gets the instant the master dies (default none). */
  deathSignal?: NodeJS.Signals | '';
  /**
   * Milliseconds the workers of a SIGKILLed master get to leave on their own (logging the
   * disconnect as egg does) before a watchdog SIGKILLs them and their descendants (300; 0: off).
   */
  orphanGrace?: number;
  /** Serve `metrics()` in Prometheus' text format on `GET /metrics` (default: not served). */
  metrics?: MetricsOptions;
}

export interface MetricsOptions {
  /** TCP port (default 9464; 0: any free port, see `metricsAddress()`). */
  port?: number;
  /** IP address to listen on (default '127.0.0.1'). */
  host?: string;
}

export interface MetricsAddress {
  host: string;
  port: number;
}

/** Messages dropped, by reason. */
export interface MetricsDrops {
  /** The recipient's queue stayed full past the stall timeout (counted on the recipient). */
  queueFull: number;
  /** The recipient had left when the message reached its queue (counted on the recipient). */
  targetGone: number;
  /** The route named no live worker (counted on the sender). */
  noTarget: number;
  /** A line over `maxLineBytes` (counted on the sender). */
  tooBig: number;
  /** A malformed line (counted on the sender). */
  badLine: number;
  /** The master's own sends were 64 MiB behind the workers' queues (totals only). */
  masterBacklog: number;
}

/** Message counters. In: user messages read (Node's internal ones not counted), bytes of their JSON and newline; out: user messages queued for a worker, bytes as queued. */
export interface MetricsCounts {
  messagesIn: number;
  bytesIn: number;
  messagesOut: number;
  bytesOut: number;
  dropped: MetricsDrops;
  droppedTotal: number;
  badLines: number;
  /** Bytes waiting in outbound queues now. */
  queueBytes: number;
}

export interface WorkerMetrics extends MetricsCounts {
  id: number;
  pid: number;
  kind: WorkerKind;
  /** egg's slot (`CFORK_WORKER_INDEX`); absent when the forker gave none. */
  slot?: number;
  state: WorkerState;
  /** Seconds since it was forked. */
  uptime: number;
  /** How many times its slot was forked before it; absent when the forker gave none. */
  restarts?: number;
}

export interface MetricsTotals extends MetricsCounts {
  /** User messages queued for workers per second over the last 10 s. */
  relaysPerSecond: number;
  agentForks: number;
  appForks: number;
  /** Forks into a slot that had a worker before. */
  reforks: number;
}

/** `metrics()`: the core's figures at one moment; totals cover every worker since the start. */
export interface ClusterMetrics {
  workers: WorkerMetrics[];
  total: MetricsTotals;
  master: {
    pid: number;
    /** Resident set size, bytes. */
    rss: number;
    /** CPU seconds in user and kernel mode. */
    cpuUser: number;
    cpuSystem: number;
    /** Seconds since the core started. */
    uptime: number;
  };
}

export interface ForkOptions {
  /** The script to run in the child. */
  exec: string;
  args?: Array<string | number>;
  /** Node options before the script (default `process.execArgv`). */
  execArgv?: string[];
  /** The child's whole environment (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** The node binary (default `process.execPath`). */
  execPath?: string;
  /** Also give the child a pipe on fd 4 for one early answer, read with `readStartup`. */
  startupPipe?: boolean;
  /** egg's slot of an app worker (a metrics label). */
  slot?: number | null;
  /** How many times that slot was forked before (a metrics label; > 0 counts as a refork). */
  restarts?: number | null;
}

export interface WorkerRef {
  id: number;
  pid: number;
}

export interface PoolWorker {
  id: number;
  pid: number;
  kind: WorkerKind;
  state: WorkerState;
  exitedAfterDisconnect: boolean;
  exitCode?: number | null;
  signalCode?: string | null;
}

export interface WorkerSnapshot {
  id: number;
  pid: number;
  kind: WorkerKind;
  state: WorkerState;
  exitedAfterDisconnect: boolean;
  /** Messages dropped because the worker's outbound queue stayed full. */
  droppedMessages: number;
  /** Bytes waiting in the worker's outbound queue. */
  queuedBytes: number;
  /** Malformed lines read from the worker (`ERR_BAD_MESSAGE` is emitted at the 1st, 2nd, 4th, … one). */
  badLines: number;
}

/** Node cluster's `listening` address. */
export interface ListeningAddress {
  addressType: 4 | 6 | -1 | string;
  address: string | null;
  port?: number;
  fd?: number;
}

export interface PoolError extends Error {
  /** e.g. 'ERR_BAD_MESSAGE', 'ERR_FRAME_TOO_BIG', 'ERR_UNEXPECTED_HANDLE', 'ERR_QUEUE_FULL' */
  code: string;
  pid?: number;
  id?: number;
}

/** Forks and supervises the agent and app workers; routes their messages in Rust. */
export declare class WorkerPool extends EventEmitter {
  constructor(options?: WorkerPoolOptions);
  readonly schedulingPolicy: SchedulingPolicy;
  forkAgent(options: ForkOptions): WorkerRef;
  forkApp(options: ForkOptions): WorkerRef;
  /**
   * Blocks until a worker forked with `startupPipe` closes its fd 4; what it wrote there, or
   * null after `timeout` ms. Once per worker.
   */
  readStartup(id: number, timeout: number): string | null;
  /**
   * Routes an envelope with egg's rules (the core's router, the only one) and returns the `to` it
   * chose, or null when the envelope names nobody egg knows. Messages for workers are queued with
   * everything else sent in this tick, as one unit; one for the master or the parent is the
   * caller's to deliver. `msg.from` defaults to 'master'.
   */
  route(msg: MessageEnvelope): 'master' | 'parent' | 'agent' | 'app' | null;
  /** `route`, for messages to workers; returns this. */
  send(msg: MessageEnvelope): this;
  /** Sends a message to one worker as is. False when it was dropped. */
  sendToWorker(pid: number, msg: unknown): boolean;
  disconnect(pid: number): void;
  kill(pid: number, signal?: NodeJS.Signals): boolean;
  /** SIGTERM to the worker and its descendants, SIGKILL after `timeout` ms. */
  terminate(pid: number, timeout: number): Promise<void>;
  /**
   * Sticky sessions in Rust: listen on `port` and hand each connection, unread, to the live app
   * worker chosen from the client's IP (egg-cluster's rule over `workers` slots) as
   * `'sticky-session:connection'` with a `net.Socket`. Returns the bound port.
   */
  listenSticky(port: number, host?: string | null, workers?: number): number;
  closeSticky(): void;
  workers(): WorkerSnapshot[];
  /** The core's counters now (what `/metrics` serves); null once closed. */
  metrics(): ClusterMetrics | null;
  /** Where `/metrics` is served, or null. */
  metricsAddress(): MetricsAddress | null;
  get(pid: number): PoolWorker | undefined;
  close(): void;

  on(event: 'fork' | 'online' | 'disconnect', listener: (worker: PoolWorker) => void): this;
  on(event: 'listening', listener: (worker: PoolWorker, address: ListeningAddress) => void): this;
  on(event: 'exit', listener: (worker: PoolWorker, code: number | null, signal: string | null) => void): this;
  on(event: 'message', listener: (msg: MessageEnvelope, from: PoolWorker | string) => void): this;
  on(event: 'parent', listener: (msg: MessageEnvelope, from: PoolWorker | string) => void): this;
  on(event: 'error', listener: (err: PoolError) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

/** The master's Messenger (egg-cluster's API). Every send returns `this`. */
export declare class Messenger {
  constructor(master: EventEmitter, pool: WorkerPool);
  readonly master: EventEmitter;
  hasParent: boolean;
  send(data: MessageEnvelope): this;
  sendToMaster(data: MessageEnvelope): this;
  sendToParent(data: MessageEnvelope): this;
  sendToApp(action: string, data?: unknown): this;
  sendToAgent(action: string, data?: unknown): this;
  broadcast(action: string, data?: unknown): this;
  sendTo(pid: number | string, action: string, data?: unknown): this;
  sendRandom(action: string, data?: unknown): this;
  close(): void;
}

/** The Messenger inside an agent or app worker (egg's IPC messenger API). */
export declare class WorkerMessenger extends EventEmitter {
  constructor();
  readonly pid: string;
  /** pids from the last `egg-pids` message. */
  opids: Array<number | string>;
  send(action: string, data?: unknown, to?: string): this;
  sendToApp(action: string, data?: unknown): this;
  sendToAgent(action: string, data?: unknown): this;
  sendToMaster(action: string, data?: unknown): this;
  sendToParent(action: string, data?: unknown): this;
  broadcast(action: string, data?: unknown): this;
  sendTo(pid: number | string, action: string, data?: unknown): this;
  sendRandom(action: string, data?: unknown): this;
  close(): void;
  on(event: 'message', listener: (msg: MessageEnvelope) => void): this;
  on(event: string | symbol, listener: (data: any) => void): this;
}

// ---- egg layer (Master, startCluster) ----

