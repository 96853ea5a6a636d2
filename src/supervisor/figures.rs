//! The core's figures for `metrics()` and `/metrics`: a snapshot of the
//! table's per-worker counters, the totals, the relay rate (sampled once a
//! second, so the relay path only adds to counters) and the master's own
//! RSS and CPU.

use std::time::Duration;

use super::Shared;
use crate::metrics::{MasterMetrics, Snapshot, SnapshotSource, WorkerMetrics};
use crate::sys;

/// Once a second, the total of messages queued for workers goes into the
/// relay-rate ring: the relay path itself only adds to counters. Ends when
/// the core is gone.
pub(super) async fn sample_relays(shared: std::sync::Weak<Shared>) {
  let mut every = tokio::time::interval(Duration::from_secs(1));
  every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
  loop {
    every.tick().await;
    let Some(shared) = shared.upgrade() else {
      return;
    };
    let total = shared.totals.load().messages_out;
    if let Ok(mut ring) = shared.relay_rate.lock() {
      ring.record(std::time::Instant::now(), total);
    };
  }
}

impl Shared {
  /// The workers in the table now and their queued bytes in all.
  pub(super) fn worker_metrics(&self) -> (Vec<WorkerMetrics>, u64) {
    let mut workers = Vec::new();
    let mut queue_bytes = 0u64;
    if let Ok(t) = self.table.read() {
      for w in &t.workers {
        let counts = w.counts();
        let queued = w.queued_bytes() as u64;
        queue_bytes += queued;
        workers.push(WorkerMetrics {
          id: w.id,
          pid: w.pid,
          kind: w.kind.as_str(),
          slot: w.slot,
          state: w.state().as_str(),
          uptime_seconds: w.started.elapsed().as_secs_f64(),
          restarts: w.restarts,
          counts,
          queue_bytes: queued,
        });
      }
    }
    (workers, queue_bytes)
  }
}

impl SnapshotSource for Shared {
  fn snapshot(&self) -> Snapshot {
    let (workers, total_queue_bytes) = self.worker_metrics();
    let total = self.totals.load();
    let relays_per_second = self.relay_rate.lock().map_or(0.0, |r| r.per_second());
    let (agent_forks, app_forks, reforks) = self.forks.load();
    let usage = sys::process_usage();
    Snapshot {
      workers,
      total,
      total_queue_bytes,
      relays_per_second,
      agent_forks,
      app_forks,
      reforks,
      master: MasterMetrics {
        pid: self.master_pid,
        rss_bytes: usage.rss_bytes,
        cpu_user_seconds: usage.user_cpu_seconds,
        cpu_system_seconds: usage.system_cpu_seconds,
        uptime_seconds: self.started.elapsed().as_secs_f64(),
      },
    }
  }
}
