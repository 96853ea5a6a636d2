//! The supervisor: spawns Node children with a Node-compatible IPC channel,
//! keeps the table of live workers, reads and routes what they send, answers
//! Node's internal messages, watches exits (pidfd, through tokio::process:
//! every child is awaited, never left to a SIGCHLD handler that libuv owns)
//! and terminates process trees.
//!
//! Ownership: children are spawned from the caller's thread (the Node main
//! thread, which lives as long as the master, so `PR_SET_PDEATHSIG` holds);
//! each child then has three tasks on the core's runtime: reader, writer and
//! waiter. Must never: block the caller's thread beyond fork/exec, panic on
//! worker data, or buffer without bound.

mod delivery;
mod outbox;

pub use outbox::Pushed;

use bytes::Bytes;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

use crate::error::{CoreError, Result};
use crate::ipc::codec::{Frame, LineDecoder};
use crate::ipc::message::{parse_line, parse_source, Envelope, Incoming, RawObject, ReceiverPid};
use crate::listen::{Listeners, Policy};
use crate::router::{self, Destination, Sender};
use crate::sys::{self, SockName};
use delivery::{tick_pause, RelayGate, Staged};
use outbox::{HandleReply, Outbox};

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

  fn sender(self) -> Sender {
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

/// Which worker an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerTag {
  pub id: u32,
  pub pid: u32,
  pub kind: WorkerKind,
}

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

/// Becomes `Some((code, signal))` when the child has exited.
pub type ExitWatch = watch::Receiver<Option<(Option<i32>, Option<i32>)>>;

/// One live (or dying) child.
pub struct Worker {
  pub id: u32,
  pub pid: u32,
  pub kind: WorkerKind,
  state: AtomicU8,
  exited_after_disconnect: AtomicBool,
  outbox: Outbox,
  /// Malformed lines read from this worker.
  bad_lines: AtomicU64,
  seq: AtomicU64,
  exit: ExitWatch,
  sock: Arc<AsyncFd<OwnedFd>>,
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

  fn set_state(&self, s: WorkerState) {
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
    self.bad_lines.load(Ordering::Relaxed)
  }

  fn live(&self) -> bool {
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

#[derive(Default)]
struct Table {
  workers: Vec<Arc<Worker>>,
  next_app_id: u32,
  next_agent_id: u32,
}

impl Table {
  fn agent(&self) -> Option<&Arc<Worker>> {
    self
      .workers
      .iter()
      .rev()
      .find(|w| w.kind == WorkerKind::Agent && w.live())
  }
}

pub(crate) struct Shared {
  pub config: Config,
  master_pid: u32,
  table: RwLock<Table>,
  events: mpsc::Sender<Event>,
  pub listeners: Listeners,
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
  async fn take(&self, len: usize) {
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

  /// Forks a child (from the calling thread) and starts watching it.
  pub fn spawn(&self, spec: SpawnSpec) -> Result<(u32, u32)> {
    if self.shared.closed.load(Ordering::Acquire) {
      return Err(CoreError::Closed);
    }
    let _enter = self.rt.enter();
    let (ours, theirs) =
      sys::ipc_socketpair().map_err(|e| CoreError::io("creating the IPC socketpair", e))?;
    let id = {
      let mut t = self.shared.table.write().map_err(|_| CoreError::Closed)?;
      match spec.kind {
        WorkerKind::App => {
          t.next_app_id += 1;
          t.next_app_id
        }
        WorkerKind::Agent => {
          t.next_agent_id += 1;
          t.next_agent_id
        }
      }
    };
    let mut cmd = tokio::process::Command::new(&spec.exec);
    cmd.args(&spec.args);
    cmd.env_clear();
    for (k, v) in &spec.env {
      if matches!(
        k.as_str(),
        "NODE_CHANNEL_FD" | "NODE_CHANNEL_SERIALIZATION_MODE" | "NODE_UNIQUE_ID"
      ) {
        continue;
      }
      cmd.env(k, v);
    }
    cmd.env("NODE_CHANNEL_FD", sys::CHILD_CHANNEL_FD.to_string());
    cmd.env("NODE_CHANNEL_SERIALIZATION_MODE", "json");
    if spec.kind == WorkerKind::App {
      cmd.env("NODE_UNIQUE_ID", id.to_string());
    }
    if let Some(cwd) = &spec.cwd {
      cmd.current_dir(cwd);
    }
    cmd.kill_on_drop(false);
    let child_fd = theirs.as_raw_fd();
    let startup = if spec.startup_pipe {
      Some(sys::startup_pipe().map_err(|e| CoreError::io("creating a startup pipe", e))?)
    } else {
      None
    };
    let startup_fd = startup.as_ref().map_or(-1, |(_, w)| w.as_raw_fd());
    let master_pid = self.shared.master_pid as libc::pid_t;
    let death_signal = self.shared.config.death_signal;
    // SAFETY: child_setup makes only async-signal-safe calls.
    unsafe {
      cmd.pre_exec(move || sys::child_setup(child_fd, startup_fd, master_pid, death_signal));
    }
    let mut child = cmd
      .spawn()
      .map_err(|e| CoreError::io("spawning a worker", e))?;
    drop(theirs);
    if let Some((read_end, write_end)) = startup {
      drop(write_end);
      if let Ok(mut pipes) = self.startup.lock() {
        pipes.insert(id, read_end);
      }
    }
    let pid = child.id().unwrap_or(0);
    if let Some(w) = &self.shared.watchdog {
      w.add(pid);
    }
    // Readable only: writers wait for room on their own (outbox::Room).
    // SAFETY: the OwnedFd moves into the AsyncFd and stays open as long as it.
    let registered =
      unsafe { AsyncFd::register_with_interest(ours, tokio::io::Interest::READABLE) };
    let sock =
      Arc::new(registered.map_err(|e| CoreError::io("registering the IPC channel", e.into()))?);
    let (outbox, outbox_rx) = Outbox::new(
      self.shared.config.queue_bytes,
      self.shared.config.stall_timeout,
    );
    let (exit_tx, exit_rx) = watch::channel(None);
    let worker = Arc::new(Worker {
      id,
      pid,
      kind: spec.kind,
      state: AtomicU8::new(WorkerState::Starting as u8),
      exited_after_disconnect: AtomicBool::new(false),
      bad_lines: AtomicU64::new(0),
      seq: AtomicU64::new(0),
      exit: exit_rx,
      sock: sock.clone(),
      outbox,
    });
    if let Ok(mut t) = self.shared.table.write() {
      t.workers.push(worker.clone());
    }
    self.shared.emit_now(Event::Fork(worker.tag()));

    let replies = worker.outbox.handle_reply.clone();
    let writer = self
      .rt
      .spawn(outbox::run_writer(sock.clone(), outbox_rx, replies));
    let reader = self
      .rt
      .spawn(self.shared.clone().run_reader(worker.clone()));
    let shared = self.shared.clone();
    self.rt.spawn(async move {
      let status = child.wait().await;
      let (code, signal) = match status {
        Ok(st) => {
          use std::os::unix::process::ExitStatusExt;
          (st.code(), st.signal())
        }
        Err(_) => (None, None),
      };
      let _ = exit_tx.send(Some((code, signal)));
      if let Some(w) = &shared.watchdog {
        w.remove(worker.pid);
      }
      // Deliver what the worker wrote before it died, then report the exit.
      let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
      writer.abort();
      shared.forget(&worker).await;
      worker.set_state(WorkerState::Dead);
      shared
        .emit(Event::Exit {
          worker: worker.tag(),
          code,
          signal: signal.and_then(sys::signal_name).map(str::to_owned),
          exited_after_disconnect: worker.exited_after_disconnect(),
        })
        .await;
    });
    Ok((id, pid))
  }

  /// Routes a message from the master or the parent (JSON text), and
  /// returns the `to` the router chose when it is one of egg's names. A
  /// message for workers is staged in the open unit (or queued as a unit of
  /// its own); one for the master or the parent is left to the caller, who
  /// delivers it at once, as egg-cluster does.
  pub fn route(&self, from: Sender, line: Vec<u8>) -> Result<Option<&'static str>> {
    let env = match parse_line(&line) {
      Ok(Incoming::User(env)) => env,
      Ok(Incoming::Internal { cmd, .. }) => {
        tracing::debug!(%cmd, "internal message from {} not routed", from.as_str());
        return Ok(None);
      }
      Err(e) => {
        let message = format!("a message from {} is malformed: {e}", from.as_str());
        tracing::warn!("{message}");
        let error = Event::Error {
          id: None,
          pid: None,
          code: "ERR_BAD_MESSAGE",
          message,
        };
        self
          .master_tx
          .send(MasterWork::Emit(error))
          .map_err(|_| CoreError::Closed)?;
        return Ok(None);
      }
    };
    let route = self.shared.route_of(from, &env);
    let to = route.to.filter(|&to| to != "?");
    match route.destination {
      Destination::Nowhere | Destination::Master | Destination::Parent => return Ok(to),
      destination => {
        let targets = self.shared.targets(destination);
        if !targets.is_empty() {
          let mut lines = Vec::new();
          let source = std::str::from_utf8(&line).unwrap_or("");
          env.encode_spliced(source, &mut lines, from.as_str(), route.to.unwrap_or(""));
          self.stage(Staged::Lines {
            targets,
            lines: Bytes::from(lines),
            messages: 1,
          })?;
        }
      }
    }
    Ok(to)
  }

  /// Opens a unit: until `commit_unit`, everything JavaScript sends is held
  /// back and then queued for its recipients together (DESIGN.md, delivery
  /// guarantee 2). Opening an open unit does nothing.
  pub fn open_unit(&self) {
    if let Ok(mut unit) = self.unit.lock() {
      unit.get_or_insert_with(Vec::new);
    }
  }

  /// Hands the open unit to the I/O thread. Without an open unit, nothing.
  pub fn commit_unit(&self) -> Result<()> {
    let staged = self.unit.lock().ok().and_then(|mut unit| unit.take());
    match staged {
      Some(staged) if !staged.is_empty() => self
        .master_tx
        .send(MasterWork::Unit(staged))
        .map_err(|_| CoreError::Closed),
      _ => Ok(()),
    }
  }

  /// Adds one send to the open unit, or queues it as a unit of its own.
  /// Messages are bounded: past `MASTER_BACKLOG_BYTES` waiting for room in
  /// workers' queues, a send is dropped with an `ERR_QUEUE_FULL` error.
  fn stage(&self, item: Staged) -> Result<()> {
    let size = item.message_bytes();
    let backlog = self.shared.master_backlog.fetch_add(size, Ordering::AcqRel) + size;
    if backlog > MASTER_BACKLOG_BYTES {
      self.shared.master_backlog.fetch_sub(size, Ordering::AcqRel);
      let message = format!(
        "the master's own sends are {backlog} bytes behind its workers' queues; dropped one of {size} bytes"
      );
      tracing::warn!("{message}");
      let _ = self.master_tx.send(MasterWork::Emit(Event::Error {
        id: None,
        pid: None,
        code: "ERR_QUEUE_FULL",
        message,
      }));
      return Ok(());
    }
    let single = {
      let mut unit = self.unit.lock().map_err(|_| CoreError::Closed)?;
      match unit.as_mut() {
        Some(open) => {
          open.push(item);
          None
        }
        None => Some(item),
      }
    };
    if let Some(pause) = tick_pause() {
      std::thread::sleep(pause);
    }
    match single {
      Some(item) => self
        .master_tx
        .send(MasterWork::Unit(vec![item]))
        .map_err(|_| CoreError::Closed),
      None => Ok(()),
    }
  }

  fn worker_by_pid(&self, pid: u32) -> Result<Arc<Worker>> {
    let t = self.shared.table.read().map_err(|_| CoreError::Closed)?;
    t.workers
      .iter()
      .find(|w| w.pid == pid)
      .cloned()
      .ok_or(CoreError::NoSuchWorker(pid))
  }

  /// Sends raw JSON to one worker (by pid), bypassing routing; staged like
  /// `route`, so the two keep their order.
  pub fn send_raw(&self, pid: u32, mut line: Vec<u8>) -> Result<Pushed> {
    let w = self.worker_by_pid(pid)?;
    if !w.live() {
      return Ok(Pushed::Closed);
    }
    if !w.outbox.admit_now(line.len() + 1) {
      return Ok(Pushed::Dropped);
    }
    line.push(b'\n');
    self.stage(Staged::Lines {
      targets: vec![w],
      lines: Bytes::from(line),
      messages: 1,
    })?;
    Ok(Pushed::Queued)
  }

  /// Node's `worker.disconnect()` for an app worker (staged like `route`,
  /// behind what was sent to it before); closes the agent's channel.
  pub fn disconnect(&self, pid: u32) -> Result<()> {
    let w = self.worker_by_pid(pid)?;
    w.exited_after_disconnect.store(true, Ordering::Release);
    match w.kind {
      WorkerKind::App => {
        let seq = w.next_seq();
        let line = format!("{{\"cmd\":\"NODE_CLUSTER\",\"act\":\"disconnect\",\"seq\":{seq}}}\n");
        self.stage(Staged::Protocol {
          target: w,
          line: Bytes::from(line),
        })?;
      }
      WorkerKind::Agent => sys::shutdown_write(w.sock.get_ref().as_raw_fd()),
    }
    Ok(())
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
    let (sticky, local) = crate::listen::sticky_listen(&self.shared, &addr, workers)?;
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

/// Terminates a process tree (see `Core::terminate`).
pub async fn terminate_tree(pid: u32, exit: Option<ExitWatch>, timeout: Duration) {
  let children = sys::descendants(pid);
  sys::kill(pid, libc::SIGTERM);
  for &c in &children {
    sys::kill(c, libc::SIGTERM);
  }
  let start = tokio::time::Instant::now();
  let exited = match exit.clone() {
    Some(mut rx) => tokio::time::timeout(timeout, rx.wait_for(|s| s.is_some()))
      .await
      .is_ok(),
    None => false,
  };
  // Descendants get the whole timeout too, even when the worker left early.
  let step = Duration::from_millis(100);
  while children.iter().any(|&c| sys::alive(c)) && start.elapsed() < timeout {
    tokio::time::sleep(step).await;
  }
  // The tree may have grown during the timeout (a SIGTERM handler that
  // spawns): look again before the SIGKILL, and kill the grandchildren the
  // worker left behind as well as those it still has.
  let mut rest: Vec<u32> = children.into_iter().filter(|&c| sys::alive(c)).collect();
  if !exited {
    for d in sys::descendants(pid) {
      if !rest.contains(&d) {
        rest.push(d);
      }
    }
    sys::kill(pid, libc::SIGKILL);
  }
  for &c in &rest {
    for d in sys::descendants(c) {
      sys::kill(d, libc::SIGKILL);
    }
    sys::kill(c, libc::SIGKILL);
  }
  if !exited {
    if let Some(mut rx) = exit {
      let _ = rx.wait_for(|s| s.is_some()).await;
    }
  }
}

/// The event for an envelope routed to the master or the parent.
fn message_event(
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

const READ_CHUNK: usize = 64 * 1024;
/// Bytes of the master's own sends that may wait for room in workers' queues.
const MASTER_BACKLOG_BYTES: usize = 64 << 20;

/// How often the trim task looks at the traffic.
const TRIM_TICK: Duration = Duration::from_secs(1);
/// A burst worth giving memory back after: this much read since the last trim...
const TRIM_AFTER_BYTES: u64 = 16 << 20;
/// ...and less than this in the last tick (the burst is over).
const TRIM_QUIET_BYTES: u64 = 1 << 20;

/// Gives the memory of a burst back to the system once it is over. Large
/// messages pass through buffers of their own size; when they are freed, the
/// allocator keeps the pages for reuse, so the master would stay at the size
/// of its largest burst for good.
async fn trim_after_bursts(shared: Arc<Shared>) {
  let mut tick = tokio::time::interval(TRIM_TICK);
  tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
  let mut pending = 0u64;
  loop {
    tick.tick().await;
    if shared.closed.load(Ordering::Acquire) {
      return;
    }
    let recent = shared.read_bytes.swap(0, Ordering::Relaxed);
    pending = pending.saturating_add(recent);
    if pending >= TRIM_AFTER_BYTES && recent < TRIM_QUIET_BYTES {
      sys::release_free_memory();
      pending = 0;
    }
  }
}

/// The most a startup pipe answer may hold; more is cut off.
const STARTUP_ANSWER_MAX: usize = 1 << 20;
/// A batch is handed to its targets once it holds this many bytes.
const BATCH_BYTES: usize = 256 * 1024;

/// Consecutive lines of one read that go to the same workers, encoded into
/// one buffer: a fan-out costs one queue push per target per batch, not per
/// message, and per-sender order is kept (a batch is flushed before a line
/// for another destination).
#[derive(Default)]
struct Batch {
  destination: Option<Destination>,
  buf: Vec<u8>,
  messages: u64,
}

impl Batch {
  fn with_capacity(bytes: usize) -> Batch {
    Batch {
      buf: Vec::with_capacity(bytes),
      ..Batch::default()
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
  async fn emit_message(&self, event: Event) {
    self.event_budget.take(event.budget_bytes()).await;
    self.emit(event).await;
  }

  /// Emits from a non-async context; only for rare events.
  fn emit_now(&self, event: Event) {
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

  async fn forget(self: &Arc<Self>, w: &Arc<Worker>) {
    if let Ok(mut t) = self.table.write() {
      t.workers.retain(|x| !Arc::ptr_eq(x, w));
    }
    self.listeners.remove_worker(self, w).await;
  }

  pub(crate) fn live_workers(&self, kind: WorkerKind) -> Vec<Arc<Worker>> {
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

  async fn run_reader(self: Arc<Self>, w: Arc<Worker>) {
    let mut decoder = LineDecoder::new(self.config.max_line_bytes);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut fds: Vec<OwnedFd> = Vec::new();
    loop {
      let n = {
        let Ok(mut guard) = w.sock.readable().await else {
          break;
        };
        match guard.try_io(|s| sys::recv_with_fds(s.get_ref().as_raw_fd(), &mut buf, &mut fds)) {
          Ok(Ok(n)) if n > 0 && n < buf.len() => {
            // A short read drained the socket: wait for the next epoll edge
            // instead of paying a read that would block. (tokio only clears
            // the readiness this guard saw, never a newer event.)
            guard.clear_ready();
            n
          }
          Ok(Ok(n)) => n,
          Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
          Ok(Err(_)) => 0,
          Err(_would_block) => continue,
        }
      };
      if !fds.is_empty() {
        let count = fds.len();
        fds.clear();
        self
          .error(
            Some(&w),
            "ERR_UNEXPECTED_HANDLE",
            format!(
              "worker {} sent {count} file descriptor(s) nobody asked for; closed them",
              w.pid
            ),
          )
          .await;
      }
      if n == 0 {
        break;
      }
      self.read_bytes.fetch_add(n as u64, Ordering::Relaxed);
      // what was read while a unit is being queued may answer part of it:
      // it waits until the whole unit is queued
      self.relay_gate.wait_open().await;
      let mut data: &[u8] = &buf[..n];
      // room for what was read plus the `from` each relayed line gains, so
      // the batch is allocated once per read instead of grown line by line
      let mut batch = Batch::with_capacity(n + n / 4 + 64);
      while let Some(frame) = decoder.next_frame(&mut data) {
        match frame {
          Frame::Line(line) => self.handle_line(&w, line, &mut batch).await,
          Frame::TooBig { seen } => {
            let max = self.config.max_line_bytes;
            self
              .error(
                Some(&w),
                "ERR_FRAME_TOO_BIG",
                format!(
                  "worker {} sent a line of more than {max} bytes ({seen} so far); dropped it",
                  w.pid
                ),
              )
              .await;
          }
        }
      }
      self.flush(&mut batch).await;
    }
    if w.live() {
      w.set_state(WorkerState::Disconnected);
    }
    self.emit(Event::Disconnect(w.tag())).await;
  }

  async fn handle_line(self: &Arc<Self>, w: &Arc<Worker>, line: &[u8], batch: &mut Batch) {
    // validated once: the text is also the source the envelope is spliced from
    match parse_source(line) {
      Err(e) => {
        self
          .bad_line(w, format!("worker {} sent a malformed message: {e}", w.pid))
          .await;
      }
      Ok((text, Incoming::User(env))) => {
        if w.state() == WorkerState::Starting && w.kind == WorkerKind::Agent {
          w.set_state(WorkerState::Online);
          self.emit(Event::Online(w.tag())).await;
        }
        self
          .route_envelope(w.kind.sender(), Some(w), &env, text, batch)
          .await;
      }
      Ok((_, Incoming::Internal { cmd, object })) => {
        self.flush(batch).await;
        self.handle_internal(w, &cmd, &object, line).await
      }
    }
  }

  /// Counts a malformed line of `w` and reports it (`ERR_BAD_MESSAGE`) at
  /// the 1st, 2nd, 4th, 8th… one, so a worker writing garbage cannot flood
  /// the master's log (egg-scripts reads stderr output as a failed start).
  async fn bad_line(&self, w: &Arc<Worker>, what: String) {
    let count = w.bad_lines.fetch_add(1, Ordering::Relaxed) + 1;
    if count.is_power_of_two() {
      let message = format!("{what}; dropped it ({count} malformed line(s) from it so far)");
      self.error(Some(w), "ERR_BAD_MESSAGE", message).await;
    }
  }

  async fn handle_internal(
    self: &Arc<Self>,
    w: &Arc<Worker>,
    cmd: &str,
    object: &RawObject<'_>,
    line: &[u8],
  ) {
    match cmd {
      "NODE_HANDLE_ACK" => w.outbox.handle_reply.set(HandleReply::Ack),
      "NODE_HANDLE_NACK" => w.outbox.handle_reply.set(HandleReply::Nack),
      "NODE_HANDLE" => {
        // A handle nobody asked for: its fd is already closed; acknowledge so
        // the worker's queue goes on, and deliver the message it wrapped.
        w.outbox.control(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
        // Unwrapped one level only: a handle message inside a handle
        // message is not something Node sends, and must not recurse.
        if let Some(inner) = object.get("msg") {
          match parse_line(inner.get().as_bytes()) {
            Ok(Incoming::User(env)) => {
              let mut batch = Batch::default();
              self
                .route_envelope(w.kind.sender(), Some(w), &env, inner.get(), &mut batch)
                .await;
              self.flush(&mut batch).await;
            }
            Ok(Incoming::Internal { cmd, .. }) => {
              tracing::debug!(pid = w.pid, %cmd, "internal message inside a handle message ignored")
            }
            Err(e) => {
              self
                .bad_line(
                  w,
                  format!(
                    "worker {} sent a handle with a malformed message: {e}",
                    w.pid
                  ),
                )
                .await
            }
          }
        }
      }
      "NODE_CLUSTER" => self.handle_cluster(w, object, line).await,
      _ => tracing::debug!(pid = w.pid, cmd, "ignored internal message"),
    }
  }

  async fn handle_cluster(self: &Arc<Self>, w: &Arc<Worker>, object: &RawObject<'_>, line: &[u8]) {
    let act = object.get_str("act");
    match act.as_deref() {
      Some("online") => {
        if w.state() == WorkerState::Starting {
          w.set_state(WorkerState::Online);
        }
        self.emit(Event::Online(w.tag())).await;
      }
      Some("queryServer") => self.listeners.query_server(self, w, object).await,
      Some("listening") => {
        w.set_state(WorkerState::Listening);
        self
          .emit(Event::Listening {
            worker: w.tag(),
            message: String::from_utf8_lossy(line).into_owned(),
          })
          .await;
      }
      Some("close") => self.listeners.close_key(self, w, object).await,
      Some("exitedAfterDisconnect") => {
        w.exited_after_disconnect.store(true, Ordering::Release);
        let ack = object.get("seq").map_or("null", |v| v.get()).to_owned();
        let seq = w.next_seq();
        let reply = format!("{{\"cmd\":\"NODE_CLUSTER\",\"ack\":{ack},\"seq\":{seq}}}\n");
        w.send_protocol(reply.into_bytes(), None);
      }
      None if object.get("ack").is_some() => self.listeners.ack(self, w, object).await,
      other => tracing::debug!(pid = w.pid, act = ?other, "ignored cluster message"),
    }
  }

  async fn route_envelope(
    self: &Arc<Self>,
    from: Sender,
    w: Option<&Arc<Worker>>,
    env: &Envelope<'_>,
    source: &str,
    batch: &mut Batch,
  ) {
    let route = self.route_of(from, env);
    match route.destination {
      Destination::Nowhere => {
        tracing::debug!(
          from = from.as_str(),
          to = route.to,
          "message routed nowhere"
        );
      }
      Destination::Master | Destination::Parent => {
        self.flush(batch).await;
        self.emit_message(message_event(from, w, env, route)).await;
      }
      destination => {
        if batch.destination != Some(destination) {
          self.flush(batch).await;
          batch.destination = Some(destination);
        }
        env.encode_spliced(
          source,
          &mut batch.buf,
          from.as_str(),
          route.to.unwrap_or(""),
        );
        batch.messages += 1;
        if batch.buf.len() >= BATCH_BYTES {
          self.flush(batch).await;
        }
      }
    }
  }

  /// Hands a batch to the live workers of its destination, as one unit.
  async fn flush(&self, batch: &mut Batch) {
    let Some(destination) = batch.destination.take() else {
      return;
    };
    let messages = std::mem::take(&mut batch.messages);
    if batch.buf.is_empty() {
      return;
    }
    let lines = Bytes::from(std::mem::take(&mut batch.buf));
    let unit = [Staged::Lines {
      targets: self.targets(destination),
      lines,
      messages,
    }];
    self.commit(&unit, None).await;
  }

  /// egg's routing decision for an envelope sent by `from`.
  fn route_of(&self, from: Sender, env: &Envelope<'_>) -> router::Route<'static> {
    let receiver = env.receiver_pid();
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

#[cfg(test)]
mod tests {
  use super::*;

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
