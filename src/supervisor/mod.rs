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
use crate::metrics::{
  Counters, Forks, MasterMetrics, RateRing, Snapshot, SnapshotSource, WorkerMetrics,
};
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
  /// Where to serve `/metrics` (None: not served).
  pub metrics: Option<MetricsListen>,
}

/// The address of the `/metrics` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsListen {
  /// An IP address (validated by whoever builds the config).
  pub host: String,
  /// 0: any free port.
  pub port: u16,
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
      metrics: None,
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
  /// egg's slot of an app worker (`CFORK_WORKER_INDEX`), a metrics label.
  pub slot: Option<u32>,
  /// How many times that slot was forked before; > 0 counts as a refork.
  pub restarts: Option<u32>,
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

/// Once a second, the total of messages queued for workers goes into the
/// relay-rate ring: the relay path itself only adds to counters. Ends when
/// the core is gone.
async fn sample_relays(shared: std::sync::Weak<Shared>) {
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
  fn worker_metrics(&self) -> (Vec<WorkerMetrics>, u64) {
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
      to: route
        .to
        .map(|t| Sender::parse(t).map_or("?", Sender::as_str)),
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
