//! The supervisor: spawns Node children with a Node-compatible IPC channel,
//! keeps the table of live workers, reads and routes what they send, answers
//! Node's internal messages, watches exits (pidfd, through tokio::process:
//! every child is awaited, never left to a SIGCHLD handler that libuv owns)
//! and terminates process trees.
//!
//! This file holds the `Core` (the runtime, its I/O thread, the calls the
//! binding makes) and the state its tasks share. The rest, one concern a
//! file: `config` (settings and what to spawn), `worker` (a worker and the
//! table of them), `spawn` (fork and the three tasks per child), `reader` (a
//! channel's lines: protocol and relay), `routing` (who a message goes to,
//! over the table), `sends` (the master's own sends, per tick), `delivery`
//! (units and the relay gate), `outbox` (a worker's bounded queue and
//! writer), `event` (what JavaScript hears and its byte budget), `figures`
//! (the metrics snapshot), `terminate`, `trim`.
//!
//! Ownership: children are spawned from the caller's thread (the Node main
//! thread, which lives as long as the master, so `PR_SET_PDEATHSIG` holds);
//! each child then has three tasks on the core's runtime: reader, writer and
//! waiter. Must never: block the caller's thread beyond fork/exec, panic on
//! worker data, or buffer without bound.

mod config;
mod delivery;
mod event;
mod figures;
mod outbox;
mod reader;
mod routing;
mod sends;
mod spawn;
mod terminate;
mod trim;
mod worker;

pub use config::{Config, MetricsListen, SpawnSpec};
pub use event::{Event, EventBudget};
pub use outbox::Pushed;
pub use terminate::terminate_tree;
pub use worker::{ExitWatch, Worker, WorkerInfo, WorkerKind, WorkerState, WorkerTag};

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

use crate::error::{CoreError, Result};
use crate::listen::Listeners;
use crate::metrics::{Counters, Forks, RateRing, Snapshot, SnapshotSource};
use crate::sys::{self, SockName};
use delivery::{tick_pause, RelayGate, Staged};
use figures::sample_relays;
use trim::trim_after_bursts;
use worker::Table;

pub(crate) struct Shared {
  pub config: Config,
  master_pid: u32,
  table: RwLock<Table>,
  events: mpsc::Sender<Event>,
  pub listeners: Listeners<Worker>,
  sticky: std::sync::Mutex<Option<crate::listen::Sticky>>,
  watchdog: Option<crate::watchdog::Watchdog>,
  /// Bytes of the master's own sends not yet handed to workers' queues.
  master_backlog: std::sync::atomic::AtomicUsize,
  closed: AtomicBool,
  /// Bytes read from workers since the trim task last looked.
  read_bytes: AtomicU64,
  /// Bytes of messages for the master or the parent on their way to JavaScript.
  event_budget: Arc<EventBudget>,
  /// Closed while a unit is being queued (see `delivery`).
  relay_gate: RelayGate,
  /// Totals since the core started: every worker's counts (each worker's
  /// `Tally` adds here too, so they outlive it), what the master's own sends
  /// lost, and queue-full drops (counted where they happen).
  totals: Arc<Counters>,
  forks: Forks,
  /// Totals of messages queued for workers, one a second (`sample_relays`).
  relay_rate: std::sync::Mutex<RateRing>,
  started: std::time::Instant,
}

/// Work queued by JavaScript calls, done in call order. Recipients are
/// resolved when the call is made, so a worker forked after a send never
/// receives it (as with Node's cluster).
enum MasterWork {
  /// What JavaScript sent in one tick (or one call outside a unit), queued
  /// for its recipients as one unit.
  Unit(Vec<Staged>),
  Emit(Event),
}

/// The core: a runtime plus the shared state. Dropping it kills every child.
pub struct Core {
  rt: Arc<tokio::runtime::Runtime>,
  /// Ends the I/O thread's `block_on` when the core is dropped.
  stop: Option<tokio::sync::oneshot::Sender<()>>,
  shared: Arc<Shared>,
  master_tx: mpsc::UnboundedSender<MasterWork>,
  /// The unit JavaScript is filling, between `open_unit` and `commit_unit`.
  unit: std::sync::Mutex<Option<Vec<Staged>>>,
  /// Read ends of startup pipes, by worker id, until `read_startup` takes them.
  startup: std::sync::Mutex<HashMap<u32, OwnedFd>>,
  /// The `/metrics` endpoint's address and its accept task, when served.
  metrics_server: Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>,
}

impl Core {
  /// Starts a core; events arrive on the returned receiver.
  pub fn new(config: Config) -> Result<(Core, mpsc::Receiver<Event>)> {
    // One I/O thread drives everything: a current-thread runtime costs less
    // per wake-up than a one-worker multi-thread one (no work-stealing
    // bookkeeping, no poll-time statistics), and the relay never needs more.
    let rt = Arc::new(
      tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CoreError::io("starting the core's runtime", e))?,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let driver = rt.clone();
    std::thread::Builder::new()
      .name("egg-cluster-rs".into())
      .spawn(move || {
        driver.block_on(async {
          let _ = stopped.await;
        });
      })
      .map_err(|e| CoreError::io("starting the core's I/O thread", e))?;
    let (events_tx, events_rx) = mpsc::channel(4096);
    let watchdog = config
      .orphan_grace
      .and_then(crate::watchdog::Watchdog::start);
    // bound here, so that a port in use is an error of the constructor
    let metrics_listener = match &config.metrics {
      Some(m) => Some(
        crate::metrics::server::bind(&m.host, m.port).map_err(|errno| {
          CoreError::MetricsListen {
            errno,
            host: m.host.clone(),
            port: m.port,
          }
        })?,
      ),
      None => None,
    };
    let shared = Arc::new(Shared {
      listeners: Listeners::new(config.policy),
      config,
      master_pid: sys::getpid(),
      table: RwLock::new(Table::default()),
      events: events_tx,
      sticky: std::sync::Mutex::new(None),
      watchdog,
      master_backlog: std::sync::atomic::AtomicUsize::new(0),
      closed: AtomicBool::new(false),
      read_bytes: AtomicU64::new(0),
      event_budget: Arc::new(EventBudget::default()),
      relay_gate: RelayGate::default(),
      totals: Arc::new(Counters::default()),
      forks: Forks::default(),
      relay_rate: std::sync::Mutex::new(RateRing::new(RELAY_RATE_WINDOW)),
      started: std::time::Instant::now(),
    });
    rt.spawn(trim_after_bursts(shared.clone()));
    rt.spawn(sample_relays(Arc::downgrade(&shared)));
    let metrics_server = match metrics_listener {
      Some(listener) => {
        let _enter = rt.enter();
        let source: Arc<dyn SnapshotSource> = shared.clone();
        Some(
          crate::metrics::server::serve(listener, source)
            .map_err(|e| CoreError::io("serving /metrics", e))?,
        )
      }
      None => None,
    };
    let (master_tx, mut master_rx) = mpsc::unbounded_channel::<MasterWork>();
    let s = shared.clone();
    rt.spawn(async move {
      while let Some(work) = master_rx.recv().await {
        match work {
          MasterWork::Unit(unit) => {
            s.commit(&unit, tick_pause()).await;
            let bytes: usize = unit.iter().map(Staged::message_bytes).sum();
            s.master_backlog.fetch_sub(bytes, Ordering::AcqRel);
          }
          MasterWork::Emit(event) => s.emit_message(event).await,
        }
      }
    });
    Ok((
      Core {
        rt,
        stop: Some(stop),
        shared,
        master_tx,
        unit: std::sync::Mutex::new(None),
        startup: std::sync::Mutex::new(HashMap::new()),
        metrics_server,
      },
      events_rx,
    ))
  }

  /// Blocks the calling thread until worker `id` closes its startup pipe
  /// (its answer, possibly empty) or `timeout` passes (`None`). The pipe is
  /// closed either way; a second call finds no pipe.
  pub fn read_startup(&self, id: u32, timeout: Duration) -> Result<Option<Vec<u8>>> {
    let fd = self
      .startup
      .lock()
      .map_err(|_| CoreError::Closed)?
      .remove(&id)
      .ok_or(CoreError::NoSuchWorker(id))?;
    sys::read_to_eof(&fd, STARTUP_ANSWER_MAX, timeout)
      .map_err(|e| CoreError::io("reading a startup pipe", e))
  }

  /// The budget of message bytes on their way to JavaScript; whoever hands
  /// events to JavaScript releases them once taken.
  pub fn event_budget(&self) -> Arc<EventBudget> {
    self.shared.event_budget.clone()
  }

  pub fn handle(&self) -> tokio::runtime::Handle {
    self.rt.handle().clone()
  }

  fn worker_by_pid(&self, pid: u32) -> Result<Arc<Worker>> {
    let t = self.shared.table.read().map_err(|_| CoreError::Closed)?;
    t.workers
      .iter()
      .find(|w| w.pid == pid)
      .cloned()
      .ok_or(CoreError::NoSuchWorker(pid))
  }

  /// Sends a signal to a worker by pid.
  pub fn kill(&self, pid: u32, signal: i32) -> Result<bool> {
    let w = self.worker_by_pid(pid)?;
    Ok(sys::kill(w.pid, signal))
  }

  /// SIGTERM to the worker and its descendants; SIGKILL to whatever is left
  /// after `timeout`. Resolves when the worker has exited (and descendants are
  /// gone or killed).
  pub fn terminate(
    &self,
    pid: u32,
    timeout: Duration,
  ) -> Result<impl std::future::Future<Output = ()>> {
    let w = self.worker_by_pid(pid)?;
    Ok(terminate_tree(w.pid, Some(w.exit.clone()), timeout))
  }

  pub fn workers(&self) -> Vec<WorkerInfo> {
    let Ok(t) = self.shared.table.read() else {
      return Vec::new();
    };
    t.workers
      .iter()
      .map(|w| WorkerInfo {
        id: w.id,
        pid: w.pid,
        kind: w.kind,
        state: w.state(),
        exited_after_disconnect: w.exited_after_disconnect(),
        dropped_messages: w.dropped_messages(),
        queued_bytes: w.queued_bytes(),
        bad_lines: w.bad_lines(),
      })
      .collect()
  }

  /// The core's counters now: per worker, in total, the relay rate and the
  /// master process.
  pub fn metrics(&self) -> Snapshot {
    self.shared.snapshot()
  }

  /// Where `/metrics` is served (the bound port when 0 was asked for).
  pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
    self.metrics_server.as_ref().map(|(addr, _)| *addr)
  }

  /// Starts sticky-session listening on `addr` (replacing a previous one).
  /// Returns the bound address, or the OS errno.
  pub fn listen_sticky(
    &self,
    addr: sys::ListenAddr,
    workers: usize,
  ) -> std::result::Result<Option<SockName>, i32> {
    let _enter = self.rt.enter();
    let (sticky, local) = crate::listen::sticky_listen(self.shared.clone(), &addr, workers)?;
    if let Ok(mut slot) = self.shared.sticky.lock() {
      if let Some(old) = slot.replace(sticky) {
        old.close();
      }
    }
    Ok(local)
  }

  /// Stops sticky-session listening.
  pub fn close_sticky(&self) {
    if let Ok(mut slot) = self.shared.sticky.lock() {
      if let Some(old) = slot.take() {
        old.close();
      }
    }
  }

  /// Kills every child (and its descendants) with SIGKILL. Idempotent.
  pub fn close(&self) {
    self.close_sticky();
    if let Some((_, server)) = &self.metrics_server {
      server.abort();
    }
    if self.shared.closed.swap(true, Ordering::AcqRel) {
      return;
    }
    let pids: Vec<u32> = self.workers().iter().map(|w| w.pid).collect();
    for pid in pids {
      for d in sys::descendants(pid) {
        sys::kill(d, libc::SIGKILL);
      }
      sys::kill(pid, libc::SIGKILL);
    }
    self.shared.listeners.close_all();
  }
}

impl Drop for Core {
  fn drop(&mut self) {
    self.close();
    if let Some(stop) = self.stop.take() {
      let _ = stop.send(());
    }
  }
}

/// The most a startup pipe answer may hold; more is cut off.
const STARTUP_ANSWER_MAX: usize = 1 << 20;

/// The relay rate is over this much time.
const RELAY_RATE_WINDOW: Duration = Duration::from_secs(10);
