//! A worker as the core knows it: its kind, its state (Node's
//! `worker.state`), its queue and channel, and the table of them all. Plain
//! data and atomics: nothing here reads, writes or spawns.

use bytes::Bytes;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::outbox::{Outbox, Pushed};
use crate::listen::Peer;
use crate::metrics::{Counts, DropReason, Tally};
use crate::router::Sender;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
  Agent,
  App,
}

impl WorkerKind {
  pub fn as_str(self) -> &'static str {
    match self {
      WorkerKind::Agent => "agent",
      WorkerKind::App => "app",
    }
  }

  pub(super) fn sender(self) -> Sender {
    match self {
      WorkerKind::Agent => Sender::Agent,
      WorkerKind::App => Sender::App,
    }
  }
}

/// A worker's life, as Node's `worker.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WorkerState {
  Starting = 0,
  Online = 1,
  Listening = 2,
  Disconnected = 3,
  Dead = 4,
}

impl WorkerState {
  pub fn as_str(self) -> &'static str {
    match self {
      WorkerState::Starting => "starting",
      WorkerState::Online => "online",
      WorkerState::Listening => "listening",
      WorkerState::Disconnected => "disconnected",
      WorkerState::Dead => "dead",
    }
  }

  fn from_u8(v: u8) -> WorkerState {
    match v {
      0 => WorkerState::Starting,
      1 => WorkerState::Online,
      2 => WorkerState::Listening,
      3 => WorkerState::Disconnected,
      _ => WorkerState::Dead,
    }
  }
}

/// Which worker an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerTag {
  pub id: u32,
  pub pid: u32,
  pub kind: WorkerKind,
}

/// Becomes `Some((code, signal))` when the child has exited.
pub type ExitWatch = watch::Receiver<Option<(Option<i32>, Option<i32>)>>;

/// One live (or dying) child.
pub struct Worker {
  pub id: u32,
  pub pid: u32,
  pub kind: WorkerKind,
  pub(super) state: AtomicU8,
  pub(super) exited_after_disconnect: AtomicBool,
  pub(super) outbox: Outbox,
  /// What it sent and was sent, and what was dropped (malformed lines
  /// included; queue-full drops are the outbox's own count).
  pub(super) counters: Tally,
  /// egg's slot and how many times it was forked before (labels only).
  pub slot: Option<u32>,
  pub restarts: Option<u32>,
  pub(super) started: std::time::Instant,
  pub(super) seq: AtomicU64,
  pub(super) exit: ExitWatch,
  pub(super) sock: Arc<AsyncFd<OwnedFd>>,
}

impl Worker {
  pub fn tag(&self) -> WorkerTag {
    WorkerTag {
      id: self.id,
      pid: self.pid,
      kind: self.kind,
    }
  }

  pub fn state(&self) -> WorkerState {
    WorkerState::from_u8(self.state.load(Ordering::Acquire))
  }

  pub(super) fn set_state(&self, s: WorkerState) {
    self.state.store(s as u8, Ordering::Release);
  }

  pub fn exited_after_disconnect(&self) -> bool {
    self.exited_after_disconnect.load(Ordering::Acquire)
  }

  pub fn dropped_messages(&self) -> u64 {
    self.outbox.dropped.load(Ordering::Relaxed)
  }

  pub fn queued_bytes(&self) -> usize {
    self.outbox.queued_bytes()
  }

  pub fn bad_lines(&self) -> u64 {
    self.counters.dropped_for(DropReason::BadLine)
  }

  /// Its counters now, queue-full drops included.
  pub fn counts(&self) -> Counts {
    let mut counts = self.counters.load();
    counts.dropped[DropReason::QueueFull as usize] += self.dropped_messages();
    counts
  }

  pub(super) fn live(&self) -> bool {
    matches!(
      self.state(),
      WorkerState::Starting | WorkerState::Online | WorkerState::Listening
    )
  }

  /// The next `seq` of our NODE_CLUSTER messages to this worker.
  pub fn next_seq(&self) -> u64 {
    self.seq.fetch_add(1, Ordering::Relaxed)
  }

  /// Queues a protocol line (cluster replies, handles), never dropped.
  pub fn send_protocol(&self, line: Vec<u8>, fd: Option<OwnedFd>) -> Pushed {
    self.outbox.push_protocol(Bytes::from(line), fd)
  }
}

/// How `listen` sees a worker.
impl Peer for Worker {
  fn pid(&self) -> u32 {
    self.pid
  }

  fn id(&self) -> u32 {
    self.id
  }

  fn is_app(&self) -> bool {
    self.kind == WorkerKind::App
  }

  fn is_listening(&self) -> bool {
    self.state() == WorkerState::Listening
  }

  fn next_seq(&self) -> u64 {
    Worker::next_seq(self)
  }

  fn send_protocol(&self, line: Vec<u8>, fd: Option<OwnedFd>) {
    // a protocol line is never dropped; a closed channel means the worker is
    // leaving, and its departure is what listen hears next
    let _ = Worker::send_protocol(self, line, fd);
  }
}

/// The live (and dying) workers, in fork order: the one table of worker state.
#[derive(Default)]
pub(super) struct Table {
  pub(super) workers: Vec<Arc<Worker>>,
  pub(super) next_app_id: u32,
  pub(super) next_agent_id: u32,
}

impl Table {
  pub(super) fn agent(&self) -> Option<&Arc<Worker>> {
    self
      .workers
      .iter()
      .rev()
      .find(|w| w.kind == WorkerKind::Agent && w.live())
  }
}

/// A snapshot of a worker for JavaScript.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
  pub id: u32,
  pub pid: u32,
  pub kind: WorkerKind,
  pub state: WorkerState,
  pub exited_after_disconnect: bool,
  pub dropped_messages: u64,
  pub queued_bytes: usize,
  pub bad_lines: u64,
}
