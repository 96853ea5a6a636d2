//! Delivery of routed messages into workers' queues, one unit at a time.
//!
//! A unit is what must reach its recipients together: everything the
//! master's JavaScript sent in one tick (DESIGN.md, delivery guarantee 2), or
//! one relayed batch fanned out to several workers. While a unit is being
//! queued the relay gate is closed: readers keep what they read until it
//! opens again, so no worker can read one line of the unit, answer, and have
//! its answer relayed ahead of the rest. Queuing a unit may wait for room
//! (up to the stall timeout per worker, as any send), so the gate is what
//! makes it one unit, not the absence of waits.
//! Must never: queue part of a unit with the gate open.

use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use super::outbox::Pushed;
use super::{Shared, Worker};
use crate::metrics::DropReason;

/// One part of a unit.
pub(crate) enum Staged {
  /// `lines` (holding `messages` messages) for each of `targets`; dropped for
  /// a target whose queue stays full.
  Lines {
    targets: Vec<Arc<Worker>>,
    lines: Bytes,
    messages: u64,
  },
  /// A protocol line for one worker: never dropped.
  Protocol { target: Arc<Worker>, line: Bytes },
}

impl Staged {
  /// How many deliveries it holds: messages times recipients (a protocol line is one).
  pub(crate) fn deliveries(&self) -> u64 {
    match self {
      Staged::Lines {
        targets, messages, ..
      } => messages * targets.len() as u64,
      Staged::Protocol { .. } => 1,
    }
  }

  /// The bytes of user messages it holds (what the master's backlog counts).
  pub(crate) fn message_bytes(&self) -> usize {
    match self {
      Staged::Lines { lines, .. } => lines.len(),
      Staged::Protocol { .. } => 0,
    }
  }
}

/// Closed while a unit is being queued; readers wait for it to open before
/// they relay what they read.
#[derive(Default)]
pub(crate) struct RelayGate {
  /// Units being queued now.
  closed_by: AtomicUsize,
  opened: Notify,
}

impl RelayGate {
  /// Returns once no unit is being queued.
  pub(crate) async fn wait_open(&self) {
    // the relay's hot path: one load when the gate is open
    while self.closed_by.load(Ordering::Acquire) != 0 {
      // listening before looking again: an opening after the look still wakes us
      let opened = self.opened.notified();
      tokio::pin!(opened);
      opened.as_mut().enable();
      if self.closed_by.load(Ordering::Acquire) == 0 {
        return;
      }
      opened.await;
    }
  }

  fn close(&self) -> GateGuard<'_> {
    self.closed_by.fetch_add(1, Ordering::AcqRel);
    GateGuard(self)
  }
}

/// Opens the gate again when dropped (so a cancelled unit cannot leave it shut).
struct GateGuard<'a>(&'a RelayGate);

impl Drop for GateGuard<'_> {
  fn drop(&mut self) {
    if self.0.closed_by.fetch_sub(1, Ordering::AcqRel) == 1 {
      self.0.opened.notify_waiters();
    }
  }
}

/// Test-only: `EGG_CLUSTER_RS_TEST_TICK_PAUSE_US` pauses the master's
/// JavaScript after each send of a tick and the core between two recipients
/// of a master unit: the widest window a relay ever has to overtake a unit.
pub(crate) fn tick_pause() -> Option<Duration> {
  static PAUSE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
  *PAUSE.get_or_init(|| {
    std::env::var("EGG_CLUSTER_RS_TEST_TICK_PAUSE_US")
      .ok()
      .and_then(|v| v.parse::<u64>().ok())
      .filter(|&us| us > 0)
      .map(Duration::from_micros)
  })
}

impl Shared {
  /// Queues a unit for its recipients, in order, with the relay gate closed
  /// (a unit of one line for one worker needs no gate). `pause` (test-only)
  /// waits between two recipients.
  pub(crate) async fn commit(&self, unit: &[Staged], pause: Option<Duration>) {
    let single = matches!(unit, [Staged::Lines { targets, .. }] if targets.len() <= 1)
      || matches!(unit, [Staged::Protocol { .. }]);
    let _gate = (!single).then(|| self.relay_gate.close());
    let mut first = true;
    for item in unit {
      match item {
        Staged::Lines {
          targets,
          lines,
          messages,
        } => {
          for target in targets {
            if let (Some(pause), false) = (pause, first) {
              tokio::time::sleep(pause).await;
            }
            first = false;
            match target.outbox.push(lines.clone(), None).await {
              Pushed::Queued => target.counters.queued(*messages, lines.len()),
              Pushed::Dropped => self.report_drop(target, *messages).await,
              Pushed::Closed => {
                target.counters.dropped(DropReason::TargetGone, *messages);
              }
            }
          }
        }
        Staged::Protocol { target, line } => {
          target.outbox.push_protocol(line.clone(), None);
        }
      }
    }
  }

  /// Counts the drop of `messages` messages for `target` (the outbox counted
  /// one) and logs it at the first drop and at every power of two.
  async fn report_drop(&self, target: &Arc<Worker>, messages: u64) {
    self.totals.dropped(DropReason::QueueFull, messages);
    let extra = messages.saturating_sub(1);
    let after_first = target.outbox.dropped.fetch_add(extra, Ordering::Relaxed);
    let previous = after_first.saturating_sub(1);
    let dropped = after_first + extra;
    if previous == 0 || dropped.ilog2() != previous.ilog2() {
      self
        .error(
          Some(target),
          "ERR_QUEUE_FULL",
          format!(
            "the outbound queue of worker {} stayed full (it is not reading its channel); {dropped} message(s) dropped so far",
            target.pid
          ),
        )
        .await;
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[tokio::test]
  async fn the_gate_holds_readers_while_any_unit_is_being_queued() {
    let gate = Arc::new(RelayGate::default());
    gate.wait_open().await;
    let first = gate.close();
    let second = gate.close();
    let reader = {
      let gate = gate.clone();
      tokio::spawn(async move { gate.wait_open().await })
    };
    tokio::task::yield_now().await;
    drop(first);
    tokio::task::yield_now().await;
    assert!(!reader.is_finished(), "one unit is still being queued");
    drop(second);
    tokio::time::timeout(Duration::from_secs(1), reader)
      .await
      .expect("the reader goes on once the gate opens")
      .expect("the reader task");
  }
}
