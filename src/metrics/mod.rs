//! Metrics: what the core counts (`counters`), a snapshot of it
//! (`Snapshot`), its rendering in Prometheus' text format (`exposition`,
//! pure), the HTTP request rules (`request`, pure) and the opt-in `/metrics`
//! endpoint on the core's runtime (`server`), answered even while the
//! master's JavaScript is busy.
//!
//! This module never reads the supervisor: the supervisor feeds the
//! counters and builds snapshots through `SnapshotSource`. Must never: make
//! the relay path do more than an atomic add, or let a client take the
//! master down.

pub mod counters;
pub mod exposition;
pub mod request;
pub mod server;

pub use counters::{Counters, Counts, DropReason, Forks, RateRing, Tally};

/// A worker's figures.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
  pub id: u32,
  pub pid: u32,
  /// `agent` or `app`.
  pub kind: &'static str,
  /// egg's slot (`CFORK_WORKER_INDEX`), when the master said.
  pub slot: Option<u32>,
  /// Node's `worker.state`.
  pub state: &'static str,
  pub uptime_seconds: f64,
  /// How many times its slot was forked before it, when the master said.
  pub restarts: Option<u32>,
  pub counts: Counts,
  /// Bytes waiting in its outbound queue.
  pub queue_bytes: u64,
}

/// The master process itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct MasterMetrics {
  pub pid: u32,
  pub rss_bytes: u64,
  pub cpu_user_seconds: f64,
  pub cpu_system_seconds: f64,
  pub uptime_seconds: f64,
}

/// Everything `metrics()` and `/metrics` report, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
  /// The workers in the core's table now (live and dying), in fork order.
  pub workers: Vec<WorkerMetrics>,
  /// Since the core started: every worker that ever was, and the master's
  /// own sends. Monotonic (except the queue bytes, a gauge).
  pub total: Counts,
  pub total_queue_bytes: u64,
  /// Messages queued for workers per second over the last 10 s.
  pub relays_per_second: f64,
  pub agent_forks: u64,
  pub app_forks: u64,
  pub reforks: u64,
  pub master: MasterMetrics,
}

/// Who can produce a snapshot (the supervisor's shared state).
pub trait SnapshotSource: Send + Sync + 'static {
  fn snapshot(&self) -> Snapshot;
}
