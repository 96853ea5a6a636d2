// Public types of egg-cluster-rs. The raw native binding's types are in
// binding.d.ts (generated); this file shapes the API users see.

import { EventEmitter } from 'events';
import type { Messenger, SchedulingPolicy, MetricsOptions, ClusterMetrics, MetricsAddress } from './core';

export type {
  WorkerKind, WorkerState, SchedulingPolicy, MessageEnvelope, WorkerPoolOptions, ForkOptions, WorkerRef,
  PoolWorker, WorkerSnapshot, ListeningAddress, PoolError, WorkerPool, Messenger, WorkerMessenger,
  MetricsOptions, MetricsAddress, MetricsDrops, MetricsCounts, WorkerMetrics, MetricsTotals, ClusterMetrics,
} from './core';

// ---- egg layer: what egg-cluster 2 (egg 3) and @eggjs/cluster 3 (egg 4) export ----

export interface HttpsOptions {
  key: string;
  cert: string;
  ca?: string;
  passphrase?: string;
}
/** @eggjs/cluster's name for {@link HttpsOptions}. */
export type ClusterHTTPSSecureOptions = HttpsOptions;
/** 'worker_threads': the agent and one app worker per `ports` entry run as threads of the master. */
export type ClusterStartMode = 'process' | 'worker_threads';

export interface ClusterOptions {
  /** The framework's npm name or absolute path (default 'egg'). */
  framework?: string;
  /** Deprecated alias of `framework`. */
  customEgg?: string;
  /** The app's directory (default `process.cwd()`). */
  baseDir?: string;
  plugins?: Record<string, unknown>;
  /** App workers (default: the number of CPUs, lowered to a container's CPU quota). */
  workers?: number | string;
  port?: number | string | null;
  https?: boolean | HttpsOptions;
  /** Modules to require in every worker before the app. */
  require?: string | string[];
  pidFile?: string;
  env?: string;
  sticky?: boolean;
  debugPort?: number;
  /** 'process' (default) or 'worker_threads' (no sticky, no reload). */
  startMode?: ClusterStartMode;
  /** worker_threads mode: one app thread per port (default `[port]`). */
  ports?: number[];
  /** How listen sockets are shared with app workers (egg-cluster-rs; default 'rr'). */
  schedulingPolicy?: SchedulingPolicy;
  /** The core's bounds (egg-cluster-rs): see WorkerPoolOptions. */
  maxLineBytes?: number;
  queueBytes?: number;
  stallTimeout?: number;
  orphanGrace?: number;
  /** Serve the core's metrics in Prometheus' text format (egg-cluster-rs): see WorkerPoolOptions. */
  metrics?: MetricsOptions;
  /** Refork backoff of a crash-looping slot or agent, ms (egg-cluster-rs; 1000 and 30000). */
  reforkBackoffInitial?: number;
  reforkBackoffMax?: number;
  [key: string]: unknown;
}

/** The options a Master runs with: the cluster's, plus the ports it picked. */
export interface MasterOptions extends ClusterOptions {
  clusterPort?: number;
  stickyWorkerPort?: number;
}

export interface ReloadOptions {
  /** Replace the agent first, with egg's agent lifecycle (default false). */
  agent?: boolean;
  /** ms a successor has to start before the reload aborts (default 120000). */
  startTimeout?: number;
}

export interface ReloadedSlot {
  oldPid: number;
  newPid: number;
  /** From the successor's fork to the old worker's exit. */
  ms: number;
}

export interface ReloadResult {
  ms: number;
  agent: ReloadedSlot | null;
  slots: ReloadedSlot[];
}

/** A refused or aborted reload: `code` is `ERR_RELOAD_IN_PROGRESS`, `ERR_RELOAD_UNAVAILABLE` or `ERR_RELOAD_ABORTED`. */
export interface ReloadError extends Error {
  name: 'ReloadError';
  code: 'ERR_RELOAD_IN_PROGRESS' | 'ERR_RELOAD_UNAVAILABLE' | 'ERR_RELOAD_ABORTED';
}

/** egg's cluster master. */
export declare class Master extends EventEmitter {
  constructor(options?: ClusterOptions);
  readonly options: ClusterOptions & Record<string, unknown>;
  readonly messenger: Messenger;
  readonly isProduction: boolean;
  /** Resolves (or calls back) when the cluster is ready. */
  ready(): Promise<void>;
  ready(callback: (err?: Error) => void): void;
  ready(flagOrError: boolean | Error): void;
  close(): Promise<void>;
  /**
   * Rolling reload: each app worker replaced in turn, the old one retired only once its
   * successor listens. Rejects with a {@link ReloadError}. SIGUSR2 does the same.
   */
  reload(options?: ReloadOptions): Promise<ReloadResult>;
  /** The core's counters now: per worker (with egg's slot and restarts), totals, the master. */
  metrics(): ClusterMetrics | null;
  /** Where `/metrics` is served (the `metrics` option), or null. */
  metricsAddress(): MetricsAddress | null;

  on(event: 'agent-start' | 'agent-exit' | 'app-start' | 'app-exit' | 'realport' | 'reload-worker', listener: (data: any) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

/**
 * Starts an egg cluster. Resolves once every app worker listens and rejects when the start fails
 * (egg 4's form); with `callback` (egg 3's form) the callback gets the outcome and the promise
 * always resolves.
 */
export declare function startCluster(options?: ClusterOptions, callback?: (err?: Error) => void): Promise<void>;

/** The agent failed: `Got agent worker error: …`, with the original error as `cause`. */
export declare class ClusterAgentWorkerError extends Error {
  constructor(id: number, workerId: number | undefined, status: string, cause: Error);
  readonly id: number;
  readonly workerId: number | undefined;
  readonly status: string;
}

/** The production health check found no agent or no app worker alive three times in a row. */
export declare class ClusterWorkerExceptionError extends Error {
  constructor(agent: number, worker: number);
  readonly count: { agent: number; worker: number };
}
