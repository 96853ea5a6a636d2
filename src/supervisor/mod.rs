//! The supervisor: spawns Node children with a Node-compatible IPC channel,
//! keeps the table of live workers, reads and routes what they send, answers
//! Node's internal messages, watches exits (pidfd, through tokio::process:
//! every child is awaited, never left to a SIGCHLD handler that libuv owns)
//! and terminates process trees.
//!
//! This file holds the `Core` (the runtime, its I/O thread, the calls the
//! binding makes) and the state its tasks share. The rest, one concern a
//! file: `worker` (a worker and the table of them), `spawn` (fork and the
//! three tasks per child), `reader` (a channel's lines: protocol and relay),
//! `sends` (the master's own sends, per tick), `delivery` (units and the
//! relay gate), `outbox` (a worker's bounded queue and writer), `event`
//! (what JavaScript hears and its byte budget), `terminate`, `trim`.
//!
//! Ownership: children are spawned from the caller's thread (the Node main
//! thread, which lives as long as the master, so `PR_SET_PDEATHSIG` holds);
//! each child then has three tasks on the core's runtime: reader, writer and
//! waiter. Must never: block the caller's thread beyond fork/exec, panic on
//! worker data, or buffer without bound.

mod delivery;
mod event;
mod outbox;
mod reader;
mod sends;
mod spawn;
mod terminate;
mod trim;
mod worker;

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
use crate::ipc::message::{Envelope, ReceiverPid};
use crate::listen::{Listeners, LiveApps, Policy};
use crate::router::{self, Destination, Sender};
use crate::sys::{self, SockName};
use delivery::{tick_pause, RelayGate, Staged};
use trim::trim_after_bursts;
use worker::Table;

/// Settings of a core; every field has a default.
#[derive(Debug, Clone)]
pub struct Config {
  /// Longest line accepted from a worker.
  pub max_line_bytes: usize,
  /// Bytes that may wait in one worker's outbound queue.
  pub queue_bytes: usize,
  /// How long a sender waits for room in a full queue before the message is
  /// dropped (and counted).
  pub stall_timeout: Duration,
  /// Signal a child gets the instant the master dies (0: none).
  pub death_signal: i32,
  /// How long the orphan watchdog lets workers of a dead master leave on
  /// their own before it SIGKILLs them (None: no watchdog).
  pub orphan_grace: Option<Duration>,
  pub policy: Policy,
  /// egg 4's rule for who a message names: `receiverWorkerId` before
  /// `receiverPid` (egg 3: the other way round).
  pub receiver_worker_id_first: bool,
}

impl Default for Config {
  fn default() -> Self {
    Config {
      max_line_bytes: 64 << 20,
      queue_bytes: 2 << 20,
      stall_timeout: Duration::from_secs(10),
      death_signal: 0,
      orphan_grace: Some(Duration::from_millis(300)),
      policy: Policy::RoundRobin,
      receiver_worker_id_first: false,
    }
  }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
  pub kind: WorkerKind,
  /// The program (`process.execPath`).
  pub exec: String,
  /// Arguments after the program: execArgv, the script, its args.
  pub args: Vec<String>,
  /// The complete environment of the child.
  pub env: Vec<(String, String)>,
  pub cwd: Option<String>,
  /// Also give the child a pipe on fd 4 for one early answer, read back
  /// with `Core::read_startup` (the agent reports on its framework there).
  pub startup_pipe: bool,
}

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
    });
    rt.spawn(trim_after_bursts(shared.clone()));
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
impl Shared {
  async fn forget(self: &Arc<Self>, w: &Arc<Worker>) {
    if let Ok(mut t) = self.table.write() {
      t.workers.retain(|x| !Arc::ptr_eq(x, w));
    }
    self.listeners.remove_worker(w);
  }

  fn live_workers(&self, kind: WorkerKind) -> Vec<Arc<Worker>> {
    self
      .table
      .read()
      .map(|t| {
        t.workers
          .iter()
          .filter(|w| w.kind == kind && w.live())
          .cloned()
          .collect()
      })
      .unwrap_or_default()
  }

  /// egg's routing decision for an envelope sent by `from`.
  fn route_of(&self, from: Sender, env: &Envelope<'_>) -> router::Route<'static> {
    let receiver = env.receiver(self.config.receiver_worker_id_first);
    // the agent's pid only matters when a receiverPid names someone
    let agent_pid = match receiver {
      Some(ReceiverPid::Pid(_)) => self
        .table
        .read()
        .ok()
        .and_then(|t| t.agent().map(|a| a.pid)),
      _ => None,
    };
    let to = env.to();
    let route = router::route(from, to.as_deref(), receiver, self.master_pid, agent_pid);
    // Only egg's names are ever written into a delivered envelope.
    router::Route {
      to: route.egg_to(),
      destination: route.destination,
    }
  }

  /// The live workers a destination names now.
  fn targets(&self, destination: Destination) -> Vec<Arc<Worker>> {
    match destination {
      Destination::Agent => self
        .live_workers(WorkerKind::Agent)
        .pop()
        .into_iter()
        .collect(),
      Destination::Apps => self.live_workers(WorkerKind::App),
      Destination::AppPid(pid) => self
        .live_workers(WorkerKind::App)
        .into_iter()
        .filter(|t| t.pid == pid)
        .collect(),
      Destination::Master | Destination::Parent | Destination::Nowhere => Vec::new(),
    }
  }
}

/// Sticky sessions hand connections to the live app workers of the table.
impl LiveApps for Shared {
  type Peer = Worker;

  fn live_apps(&self) -> Vec<Arc<Worker>> {
    self.live_workers(WorkerKind::App)
  }
}
