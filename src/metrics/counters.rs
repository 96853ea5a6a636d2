//! The counters the core keeps for `metrics()` and `/metrics`: per worker,
//! for what has no worker (the master's own sends), and for the workers that
//! have left, so that totals only ever grow. Plain atomics with `Relaxed`
//! adds: counting a batch on the relay path is one atomic add per figure,
//! never a lock, never an allocation. Also the relay-rate ring a 1 s sampler
//! feeds. Must never: block, allocate on the relay path, or read workers
//! itself (the supervisor hands it numbers).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
  /// The recipient's queue stayed full past the stall timeout (or it had not
  /// yet read half of it since such a drop). Counted on the recipient.
  QueueFull,
  /// The recipient had left (its channel closed) when the message reached
  /// its queue. Counted on the recipient.
  TargetGone,
  /// The route named no live worker (`to: 'agent'` with no agent, a
  /// `receiverPid` nobody has, an unknown `to`). Counted on the sender.
  NoTarget,
  /// A line over `maxLineBytes`. Counted on the sender.
  TooBig,
  /// A malformed line. Counted on the sender.
  BadLine,
  /// The master's own sends were more than 64 MiB behind the workers'
  /// queues. Counted on the master (no worker).
  MasterBacklog,
}

impl DropReason {
  pub const COUNT: usize = 6;
  pub const ALL: [DropReason; DropReason::COUNT] = [
    DropReason::QueueFull,
    DropReason::TargetGone,
    DropReason::NoTarget,
    DropReason::TooBig,
    DropReason::BadLine,
    DropReason::MasterBacklog,
  ];

  /// The `reason` label.
  pub fn as_str(self) -> &'static str {
    match self {
      DropReason::QueueFull => "queue_full",
      DropReason::TargetGone => "target_gone",
      DropReason::NoTarget => "no_target",
      DropReason::TooBig => "too_big",
      DropReason::BadLine => "bad_line",
      DropReason::MasterBacklog => "master_backlog",
    }
  }
}

/// Counters of one party (a worker, the master, or the workers that left).
///
/// * in: user messages (egg envelopes) read from a worker and their bytes
///   (the JSON text and its newline), whatever their route; Node's internal
///   messages (`NODE_*`) are not counted.
/// * out: user messages queued for a worker and their bytes as queued (with
///   `from`/`to` spliced in); a fan-out counts once per recipient. Queued,
///   not yet written: what is still queued shows in the queue bytes.
#[derive(Debug, Default)]
pub struct Counters {
  messages_in: AtomicU64,
  bytes_in: AtomicU64,
  messages_out: AtomicU64,
  bytes_out: AtomicU64,
  dropped: [AtomicU64; DropReason::COUNT],
}

impl Counters {
  /// One message of `bytes` bytes read from the worker.
  pub fn read(&self, bytes: usize) {
    self.messages_in.fetch_add(1, Ordering::Relaxed);
    self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
  }

  /// `messages` messages, `bytes` bytes in all, queued for the worker.
  pub fn queued(&self, messages: u64, bytes: usize) {
    self.messages_out.fetch_add(messages, Ordering::Relaxed);
    self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
  }

  /// Counts `messages` dropped for `reason`; returns the count before.
  pub fn dropped(&self, reason: DropReason, messages: u64) -> u64 {
    self.dropped[reason as usize].fetch_add(messages, Ordering::Relaxed)
  }

  pub fn dropped_for(&self, reason: DropReason) -> u64 {
    self.dropped[reason as usize].load(Ordering::Relaxed)
  }

  pub fn load(&self) -> Counts {
    let mut dropped = [0; DropReason::COUNT];
    for (slot, counter) in dropped.iter_mut().zip(&self.dropped) {
      *slot = counter.load(Ordering::Relaxed);
    }
    Counts {
      messages_in: self.messages_in.load(Ordering::Relaxed),
      bytes_in: self.bytes_in.load(Ordering::Relaxed),
      messages_out: self.messages_out.load(Ordering::Relaxed),
      bytes_out: self.bytes_out.load(Ordering::Relaxed),
      dropped,
    }
  }
}

/// A worker's counters: each add is also made to the core's totals, which
/// outlive the worker (a message counted on a worker that has just left
/// still reaches the totals).
#[derive(Debug)]
pub struct Tally {
  own: Counters,
  total: Arc<Counters>,
}

impl Tally {
  pub fn new(total: Arc<Counters>) -> Tally {
    Tally {
      own: Counters::default(),
      total,
    }
  }

  pub fn read(&self, bytes: usize) {
    self.own.read(bytes);
    self.total.read(bytes);
  }

  pub fn queued(&self, messages: u64, bytes: usize) {
    self.own.queued(messages, bytes);
    self.total.queued(messages, bytes);
  }

  /// Counts `messages` dropped for `reason`; returns this worker's count before.
  pub fn dropped(&self, reason: DropReason, messages: u64) -> u64 {
    self.total.dropped(reason, messages);
    self.own.dropped(reason, messages)
  }

  pub fn dropped_for(&self, reason: DropReason) -> u64 {
    self.own.dropped_for(reason)
  }

  /// This worker's own counts.
  pub fn load(&self) -> Counts {
    self.own.load()
  }
}

/// A reading of `Counters`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
  pub messages_in: u64,
  pub bytes_in: u64,
  pub messages_out: u64,
  pub bytes_out: u64,
  /// By `DropReason as usize`.
  pub dropped: [u64; DropReason::COUNT],
}

impl Counts {
  pub fn add(&mut self, other: &Counts) {
    self.messages_in += other.messages_in;
    self.bytes_in += other.bytes_in;
    self.messages_out += other.messages_out;
    self.bytes_out += other.bytes_out;
    for (a, b) in self.dropped.iter_mut().zip(other.dropped) {
      *a += b;
    }
  }

  pub fn dropped_for(&self, reason: DropReason) -> u64 {
    self.dropped[reason as usize]
  }

  pub fn dropped_total(&self) -> u64 {
    self.dropped.iter().sum()
  }
}

/// Forks, by kind, and reforks (forks of a slot forked before).
#[derive(Debug, Default)]
pub struct Forks {
  agent: AtomicU64,
  app: AtomicU64,
  reforks: AtomicU64,
}

impl Forks {
  pub fn forked(&self, agent: bool, restarts: Option<u32>) {
    let kind = if agent { &self.agent } else { &self.app };
    kind.fetch_add(1, Ordering::Relaxed);
    if restarts.unwrap_or(0) > 0 {
      self.reforks.fetch_add(1, Ordering::Relaxed);
    }
  }

  /// (agent forks, app forks, reforks)
  pub fn load(&self) -> (u64, u64, u64) {
    (
      self.agent.load(Ordering::Relaxed),
      self.app.load(Ordering::Relaxed),
      self.reforks.load(Ordering::Relaxed),
    )
  }
}

/// The last samples of a monotonic total, one a second: the rate over the
/// last `window` is the difference between the newest and the oldest.
#[derive(Debug)]
pub struct RateRing {
  samples: VecDeque<(Instant, u64)>,
  window: Duration,
}

impl RateRing {
  pub fn new(window: Duration) -> RateRing {
    RateRing {
      samples: VecDeque::with_capacity(16),
      window,
    }
  }

  /// Records `total` as of `at`, forgetting samples older than the window.
  pub fn record(&mut self, at: Instant, total: u64) {
    self.samples.push_back((at, total));
    while let Some(&(oldest, _)) = self.samples.front() {
      if at.saturating_duration_since(oldest) > self.window && self.samples.len() > 2 {
        self.samples.pop_front();
      } else {
        break;
      }
    }
  }

  /// Per second over the samples held (0 with fewer than two).
  pub fn per_second(&self) -> f64 {
    let (Some(&(t0, v0)), Some(&(t1, v1))) = (self.samples.front(), self.samples.back()) else {
      return 0.0;
    };
    let secs = t1.saturating_duration_since(t0).as_secs_f64();
    if secs <= 0.0 {
      return 0.0;
    }
    v1.saturating_sub(v0) as f64 / secs
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_tally_counts_for_its_worker_and_for_the_totals_that_outlive_it() {
    let total = Arc::new(Counters::default());
    let first = Tally::new(total.clone());
    first.read(10);
    first.read(5);
    first.queued(3, 30);
    assert_eq!(first.dropped(DropReason::TooBig, 2), 0);
    assert_eq!(first.dropped(DropReason::TooBig, 1), 2);
    let second = Tally::new(total.clone());
    second.queued(1, 7);
    drop(first);
    let c = total.load();
    assert_eq!((c.messages_in, c.bytes_in), (2, 15));
    assert_eq!((c.messages_out, c.bytes_out), (4, 37));
    assert_eq!(c.dropped_for(DropReason::TooBig), 3);
    assert_eq!(c.dropped_total(), 3);
    let own = second.load();
    assert_eq!(
      (own.messages_in, own.messages_out, own.bytes_out),
      (0, 1, 7)
    );
  }

  #[test]
  fn reforks_are_forks_of_a_slot_forked_before() {
    let forks = Forks::default();
    forks.forked(true, None);
    forks.forked(false, Some(0));
    forks.forked(false, Some(0));
    forks.forked(false, Some(1));
    forks.forked(false, Some(4));
    assert_eq!(forks.load(), (1, 4, 2));
  }

  #[test]
  fn the_rate_is_over_the_last_ten_seconds_of_samples() {
    let mut ring = RateRing::new(Duration::from_secs(10));
    let t = Instant::now();
    assert_eq!(ring.per_second(), 0.0);
    ring.record(t, 0);
    assert_eq!(ring.per_second(), 0.0);
    // 100 a second for 20 s, then nothing for 5 s
    for s in 1..=20u64 {
      ring.record(t + Duration::from_secs(s), s * 100);
    }
    assert_eq!(ring.per_second(), 100.0);
    for s in 21..=25u64 {
      ring.record(t + Duration::from_secs(s), 2000);
    }
    // the window holds 15 s … 25 s: 500 in 10 s
    assert_eq!(ring.per_second(), 50.0);
    assert!(ring.samples.len() <= 11);
  }
}
