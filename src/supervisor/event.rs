//! What JavaScript hears about: the core's events, the event for a message
//! routed to the master or the parent, and the byte budget that bounds such
//! messages on their way to JavaScript.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::worker::{Worker, WorkerTag};
use super::Shared;
use crate::ipc::message::Envelope;
use crate::router::{self, Destination, Sender};

/// Everything JavaScript hears about.
#[derive(Debug, Clone)]
pub enum Event {
  Fork(WorkerTag),
  Online(WorkerTag),
  /// Node's cluster `listening`: the worker's message, JSON.
  Listening {
    worker: WorkerTag,
    message: String,
  },
  /// An envelope routed to the master or the parent (`to`), JSON.
  Message {
    to: &'static str,
    from_id: u32,
    from_pid: u32,
    from: &'static str,
    line: String,
  },
  Disconnect(WorkerTag),
  Exit {
    worker: WorkerTag,
    code: Option<i32>,
    signal: Option<String>,
    exited_after_disconnect: bool,
  },
  Error {
    id: Option<u32>,
    pid: Option<u32>,
    code: &'static str,
    message: String,
  },
}

/// Bounds the bytes of `to: master` / `to: parent` messages waiting for
/// JavaScript (the event channel itself is bounded by count only): a reader
/// whose message does not fit waits, i.e. stops reading its worker, until
/// JavaScript has taken earlier ones. One message always fits when nothing
/// waits, whatever its size.
#[derive(Debug, Default)]
pub struct EventBudget {
  bytes: std::sync::atomic::AtomicUsize,
  room: tokio::sync::Notify,
}

/// The most message bytes that wait for JavaScript at once.
const EVENT_BUDGET_BYTES: usize = 64 << 20;

impl EventBudget {
  pub(super) async fn take(&self, len: usize) {
    loop {
      // listening before looking: a release after the look still wakes us
      let room = self.room.notified();
      tokio::pin!(room);
      room.as_mut().enable();
      let fits = self
        .bytes
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
          (used == 0 || used.saturating_add(len) <= EVENT_BUDGET_BYTES)
            .then(|| used.saturating_add(len))
        })
        .is_ok();
      if fits {
        return;
      }
      room.await;
    }
  }

  /// JavaScript took messages of `len` bytes in all.
  pub fn release(&self, len: usize) {
    if len == 0 {
      return;
    }
    let _ = self
      .bytes
      .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
        Some(b.saturating_sub(len))
      });
    self.room.notify_waiters();
  }

  /// Bytes waiting now.
  #[cfg(test)]
  fn waiting(&self) -> usize {
    self.bytes.load(Ordering::Acquire)
  }
}

impl Event {
  /// The bytes this event holds against the `EventBudget`.
  pub fn budget_bytes(&self) -> usize {
    match self {
      Event::Message { line, .. } => line.len(),
      _ => 0,
    }
  }
}

impl Shared {
  /// Emits an event, waiting for room (pushes back on the worker we read).
  pub(crate) async fn emit(&self, event: Event) {
    let _ = self.events.send(event).await;
  }

  /// Emits a message for the master or the parent once the event budget has
  /// room for it.
  pub(super) async fn emit_message(&self, event: Event) {
    self.event_budget.take(event.budget_bytes()).await;
    self.emit(event).await;
  }

  /// Emits from a non-async context; only for rare events.
  pub(super) fn emit_now(&self, event: Event) {
    if let Err(mpsc::error::TrySendError::Full(ev)) = self.events.try_send(event) {
      let tx = self.events.clone();
      tokio::spawn(async move {
        let _ = tx.send(ev).await;
      });
    }
  }

  pub(crate) async fn error(&self, w: Option<&Worker>, code: &'static str, message: String) {
    tracing::warn!(pid = w.map(|w| w.pid), code, "{message}");
    self
      .emit(Event::Error {
        id: w.map(|w| w.id),
        pid: w.map(|w| w.pid),
        code,
        message,
      })
      .await;
  }
}

/// The event for an envelope routed to the master or the parent.
pub(super) fn message_event(
  from: Sender,
  w: Option<&Arc<Worker>>,
  env: &Envelope<'_>,
  route: router::Route<'_>,
) -> Event {
  let mut line = env.encode(from.as_str(), route.to.unwrap_or(""));
  line.pop();
  Event::Message {
    to: if route.destination == Destination::Master {
      "master"
    } else {
      "parent"
    },
    from_id: w.map_or(0, |w| w.id),
    from_pid: w.map_or(0, |w| w.pid),
    from: from.as_str(),
    line: String::from_utf8(line).unwrap_or_default(),
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::time::Duration;

  #[tokio::test]
  async fn the_event_budget_holds_a_reader_until_javascript_takes_messages() {
    let budget = Arc::new(EventBudget::default());
    // one message always fits when nothing waits, even one over the budget
    budget.take(EVENT_BUDGET_BYTES + 1).await;
    assert_eq!(budget.waiting(), EVENT_BUDGET_BYTES + 1);
    budget.release(EVENT_BUDGET_BYTES + 1);
    budget.take(EVENT_BUDGET_BYTES - 10).await;
    // this one does not fit until the first is released
    let waiter = {
      let b = budget.clone();
      tokio::spawn(async move { b.take(100).await })
    };
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(!waiter.is_finished(), "a message over the budget waits");
    budget.release(EVENT_BUDGET_BYTES - 10);
    tokio::time::timeout(Duration::from_secs(1), waiter)
      .await
      .expect("released in time")
      .expect("the waiting task");
    assert_eq!(budget.waiting(), 100);
    // releasing more than is held cannot wrap around
    budget.release(1000);
    assert_eq!(budget.waiting(), 0);
  }
}
