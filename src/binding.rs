//! The only module that knows napi: converts JS arguments, forwards to the
//! core, and carries every core event to JavaScript through one
//! ThreadsafeFunction, in batches. No panic crosses this boundary: every
//! entry point returns a `napi::Result` and the core never panics on input.

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::CoreError;
use crate::ipc::message::{parse_line, Incoming};
use crate::listen::Policy;
use crate::router::{self, Destination, Sender};
use crate::supervisor::{Config, Core, Event, SpawnSpec, WorkerKind, WorkerTag};
use crate::sys;

/// A core error as a JS Error whose `code` is the core's stable code
/// (`ERR_CLOSED`, `ERR_NO_SUCH_WORKER`, …).
fn to_napi(e: CoreError) -> Error<String> {
  Error::new(e.code().to_owned(), e.to_string())
}

/// A TCP port nothing listens on, found synchronously as detect-port's
/// `detectPort()` finds one (bind port 0 on every address, read, release).
#[napi(catch_unwind)]
#[cfg_attr(test, allow(dead_code))]
pub fn free_port() -> Result<u32, String> {
  crate::sys::free_port()
    .map(u32::from)
    .map_err(|e| to_napi(CoreError::io("finding a free port", e)))
}

/// egg's routing decision for one envelope, without a core: what a
/// worker_threads master (lib/thread_table.js) asks before it posts a
/// message to its threads, so that the core's router stays the only one.
#[napi(object)]
#[cfg_attr(test, allow(dead_code))]
pub struct RouteDecision {
  /// The `to` egg writes into the envelope (`'master'`, `'parent'`,
  /// `'agent'`, `'app'`), or null when it names nobody egg knows.
  pub to: Option<String>,
  /// `'master'`, `'parent'`, `'agent'`, `'apps'` (every live app worker),
  /// `'app'` (only the one `receiver` names) or `'nowhere'`.
  pub destination: String,
  /// The app worker's id when `destination` is `'app'`.
  pub receiver: Option<u32>,
}

/// Routes the envelope `json` (its `to`, `receiverPid`, `receiverWorkerId`
/// are read; `data` may be left out) sent by `from` (`'master'`, `'parent'`,
/// `'agent'`, `'app'`) with egg's rules, where `masterId` and `agentId` are
/// the ids a receiver may name (pids, or thread ids in worker_threads mode).
/// `receiverWorkerIdFirst`: egg 4's `receiverWorkerId ?? receiverPid`.
#[napi(catch_unwind)]
#[cfg_attr(test, allow(dead_code))]
pub fn route_decision(
  from: String,
  json: String,
  master_id: u32,
  agent_id: Option<u32>,
  receiver_worker_id_first: Option<bool>,
) -> Result<RouteDecision, String> {
  let sender = Sender::parse(&from).ok_or_else(|| {
    invalid(format!(
      "from must be 'master', 'parent', 'agent' or 'app', got {from:?}"
    ))
  })?;
  let nowhere = || RouteDecision {
    to: None,
    destination: "nowhere".to_owned(),
    receiver: None,
  };
  let env = match parse_line(json.as_bytes()) {
    Ok(Incoming::User(env)) => env,
    // Node's internal messages are never egg's to route
    Ok(Incoming::Internal { .. }) => return Ok(nowhere()),
    Err(e) => return Err(invalid(format!("the envelope is malformed: {e}"))),
  };
  let receiver = env.receiver(receiver_worker_id_first.unwrap_or(false));
  let to = env.to();
  let route = router::route(sender, to.as_deref(), receiver, master_id, agent_id);
  let (destination, receiver) = match route.destination {
    Destination::Master => ("master", None),
    Destination::Parent => ("parent", None),
    Destination::Agent => ("agent", None),
    Destination::Apps => ("apps", None),
    Destination::AppPid(id) => ("app", Some(id)),
    Destination::Nowhere => ("nowhere", None),
  };
  Ok(RouteDecision {
    to: route.egg_to().filter(|&t| t != "?").map(str::to_owned),
    destination: destination.to_owned(),
    receiver,
  })
}

/// An argument the core refuses (`err.code === 'ERR_INVALID_ARG_VALUE'`).
fn invalid(msg: impl Into<String>) -> Error<String> {
  to_napi(CoreError::InvalidArg(msg.into()))
}

/// The core's options, validated: the one place they are (the JS layer
/// passes them through and only turns these errors into `TypeError`s).
fn config_from(options: NativeClusterOptions) -> std::result::Result<Config, CoreError> {
  let bytes = |name: &str, v: f64| {
    if v.is_finite() && v >= 1.0 {
      Ok(v as usize)
    } else {
      Err(CoreError::InvalidArg(format!(
        "options.{name} must be a positive number of bytes, got {v}"
      )))
    }
  };
  let millis = |name: &str, v: f64| {
    if v.is_finite() && v >= 0.0 {
      Ok(Duration::from_millis(v as u64))
    } else {
      Err(CoreError::InvalidArg(format!(
        "options.{name} must be a number of milliseconds >= 0, got {v}"
      )))
    }
  };
  let mut config = Config::default();
  if let Some(v) = options.max_line_bytes {
    config.max_line_bytes = bytes("maxLineBytes", v)?;
  }
  if let Some(v) = options.queue_bytes {
    config.queue_bytes = bytes("queueBytes", v)?;
  }
  if let Some(v) = options.stall_timeout_ms {
    config.stall_timeout = millis("stallTimeoutMs", v)?;
  }
  if let Some(p) = options.scheduling_policy.as_deref() {
    config.policy = Policy::parse(p).ok_or_else(|| {
      CoreError::InvalidArg(format!(
        "options.schedulingPolicy must be one of rr, none, reuseport, got {p}"
      ))
    })?;
  }
  if let Some(s) = options.death_signal.as_deref() {
    config.death_signal = if s.is_empty() {
      0
    } else {
      sys::signal_from_name(s).ok_or_else(|| {
        CoreError::InvalidArg(format!("options.deathSignal: unknown signal {s:?}"))
      })?
    };
  }
  if let Some(v) = options.orphan_grace_ms {
    let grace = millis("orphanGraceMs", v)?;
    config.orphan_grace = (!grace.is_zero()).then_some(grace);
  }
  config.receiver_worker_id_first = options.receiver_worker_id_first.unwrap_or(false);
  Ok(config)
}

/// Options of a `NativeCluster`.
#[napi(object)]
#[derive(Default)]
pub struct NativeClusterOptions {
  /// Longest line accepted from a worker, in bytes (default 64 MiB).
  pub max_line_bytes: Option<f64>,
  /// Bytes that may wait in one worker's outbound queue (default 2 MiB).
  pub queue_bytes: Option<f64>,
  /// Milliseconds a sender waits for room in a full queue before the message
  /// is dropped and counted (default 10000).
  pub stall_timeout_ms: Option<f64>,
  /// `'rr'` (default), `'none'` or `'reuseport'`.
  pub scheduling_policy: Option<String>,
  /// Signal children get the instant the master dies (default none: the
  /// orphan watchdog lets them leave gracefully first).
  pub death_signal: Option<String>,
  /// Milliseconds workers of a killed master get to exit on their own before
  /// the watchdog SIGKILLs them and their descendants (default 300; 0
  /// disables the watchdog).
  pub orphan_grace_ms: Option<f64>,
  /// egg 4's routing rule: `receiverWorkerId ?? receiverPid` names the
  /// receiver (default false: egg 3's, `receiverPid` first).
  pub receiver_worker_id_first: Option<bool>,
}

/// What to spawn.
#[napi(object)]
pub struct NativeSpawnOptions {
  /// `'agent'` or `'app'`.
  pub kind: String,
  /// The program, normally `process.execPath`.
  pub exec: String,
  /// Arguments after the program: execArgv, the script, its arguments.
  pub args: Vec<String>,
  /// The complete environment of the child.
  pub env: Vec<Vec<String>>,
  pub cwd: Option<String>,
  /// Give the child a pipe on fd 4 for one early answer (`readStartup`).
  pub startup_pipe: Option<bool>,
}

/// A spawned worker.
#[napi(object)]
pub struct NativeWorkerRef {
  pub id: u32,
  pub pid: u32,
}

/// A worker as the core sees it now.
#[napi(object)]
pub struct NativeWorkerInfo {
  pub id: u32,
  pub pid: u32,
  /// `'agent'` or `'app'`.
  pub kind: String,
  /// `'starting'`, `'online'`, `'listening'`, `'disconnected'` or `'dead'`.
  pub state: String,
  pub exited_after_disconnect: bool,
  /// Messages dropped because the worker's queue stayed full.
  pub dropped_messages: f64,
  /// Malformed lines read from the worker (reported at the 1st, 2nd, 4th, … one).
  pub bad_lines: f64,
  /// Bytes waiting in the worker's outbound queue.
  pub queued_bytes: f64,
}

/// One event from the core. `kind` says which fields are set.
#[napi(object)]
pub struct NativeEvent {
  /// `'fork'`, `'online'`, `'listening'`, `'message'`, `'disconnect'`, `'exit'` or `'error'`.
  pub kind: String,
  pub id: Option<u32>,
  pub pid: Option<u32>,
  /// The worker's kind (`'agent'`/`'app'`), or the sender for messages.
  pub worker: Option<String>,
  /// JSON text: the routed envelope (`message`) or Node's listening message.
  pub data: Option<String>,
  /// For `message`: `'master'` or `'parent'`.
  pub to: Option<String>,
  pub code: Option<i32>,
  pub signal: Option<String>,
  pub exited_after_disconnect: Option<bool>,
  /// For `error`: a stable code such as `ERR_BAD_MESSAGE`.
  pub error_code: Option<String>,
  pub message: Option<String>,
}

impl NativeEvent {
  fn new(kind: &str) -> Self {
    NativeEvent {
      kind: kind.to_owned(),
      id: None,
      pid: None,
      worker: None,
      data: None,
      to: None,
      code: None,
      signal: None,
      exited_after_disconnect: None,
      error_code: None,
      message: None,
    }
  }

  fn from_core(e: Event) -> Self {
    match e {
      Event::Fork(w) => NativeEvent::worker("fork", w),
      Event::Online(w) => NativeEvent::worker("online", w),
      Event::Disconnect(w) => NativeEvent::worker("disconnect", w),
      Event::Listening { worker, message } => NativeEvent {
        data: Some(message),
        ..NativeEvent::worker("listening", worker)
      },
      Event::Message {
        to,
        from_id,
        from_pid,
        from,
        line,
      } => NativeEvent {
        id: Some(from_id),
        pid: Some(from_pid),
        worker: Some(from.to_owned()),
        to: Some(to.to_owned()),
        data: Some(line),
        ..NativeEvent::new("message")
      },
      Event::Exit {
        worker,
        code,
        signal,
        exited_after_disconnect,
      } => NativeEvent {
        code,
        signal,
        exited_after_disconnect: Some(exited_after_disconnect),
        ..NativeEvent::worker("exit", worker)
      },
      Event::Error {
        id,
        pid,
        code,
        message,
      } => NativeEvent {
        id,
        pid,
        error_code: Some(code.to_owned()),
        message: Some(message),
        ..NativeEvent::new("error")
      },
    }
  }

  fn worker(kind: &str, worker: WorkerTag) -> Self {
    NativeEvent {
      id: Some(worker.id),
      pid: Some(worker.pid),
      worker: Some(worker.kind.as_str().to_owned()),
      ..NativeEvent::new(kind)
    }
  }
}

/// Opt-in diagnostics of the core on stderr: `EGG_CLUSTER_RS_LOG=debug`
/// (any tracing filter). Silent by default: egg-scripts treats any stderr
/// output before egg-ready as a failed start.
fn init_tracing() {
  static ONCE: std::sync::Once = std::sync::Once::new();
  ONCE.call_once(|| {
    if let Ok(filter) = std::env::var("EGG_CLUSTER_RS_LOG") {
      if let Ok(filter) = tracing_subscriber::EnvFilter::try_new(filter) {
        let _ = tracing_subscriber::fmt()
          .with_env_filter(filter)
          .with_writer(std::io::stderr)
          .try_init();
      }
    }
  });
}

const MAX_BATCH: usize = 512;
const MAX_BATCHES_IN_FLIGHT: usize = 8;

/// The native cluster core: forks and supervises Node children, speaks Node's
/// IPC protocol with them and routes egg messages. Events reach `onEvents`
/// in batches.
#[napi]
pub struct NativeCluster {
  core: Option<Core>,
}

#[napi]
impl NativeCluster {
  /// Starts a core. `onEvents` receives arrays of events; it does not keep
  /// the process alive (call `ref()` style keeping is the caller's job).
  #[napi(constructor, catch_unwind)]
  pub fn new(
    options: Option<NativeClusterOptions>,
    on_events: ThreadsafeFunction<Vec<NativeEvent>, (), Vec<NativeEvent>, Status, false, true>,
  ) -> Result<Self, String> {
    init_tracing();
    let config = config_from(options.unwrap_or_default()).map_err(to_napi)?;
    let (core, mut events) = Core::new(config).map_err(to_napi)?;
    let budget = core.event_budget();
    let on_events = Arc::new(on_events);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    core.handle().spawn(async move {
      let mut batch = Vec::with_capacity(64);
      while let Some(first) = events.recv().await {
        let mut bytes = first.budget_bytes();
        batch.push(NativeEvent::from_core(first));
        while batch.len() < MAX_BATCH {
          match events.try_recv() {
            Ok(e) => {
              bytes += e.budget_bytes();
              batch.push(NativeEvent::from_core(e));
            }
            Err(_) => break,
          }
        }
        while in_flight.load(Ordering::Acquire) >= MAX_BATCHES_IN_FLIGHT {
          let _ = tokio::time::timeout(Duration::from_millis(5), done.notified()).await;
        }
        in_flight.fetch_add(1, Ordering::AcqRel);
        let counter = in_flight.clone();
        let notify = done.clone();
        let taken = budget.clone();
        let status = on_events.call_with_return_value(
          std::mem::take(&mut batch),
          ThreadsafeFunctionCallMode::NonBlocking,
          move |_ret: Result<()>, _env| {
            counter.fetch_sub(1, Ordering::AcqRel);
            notify.notify_one();
            // JavaScript has these messages now
            taken.release(bytes);
            Ok(())
          },
        );
        if status != Status::Ok {
          budget.release(bytes);
          in_flight.fetch_sub(1, Ordering::AcqRel);
          if status == Status::Closing {
            return;
          }
        }
      }
    });
    Ok(NativeCluster { core: Some(core) })
  }

  fn core(&self) -> Result<&Core, String> {
    self.core.as_ref().ok_or_else(|| to_napi(CoreError::Closed))
  }

  /// Forks a child with a Node IPC channel; app workers are cluster workers.
  #[napi(catch_unwind)]
  pub fn spawn(&self, options: NativeSpawnOptions) -> Result<NativeWorkerRef, String> {
    let kind = match options.kind.as_str() {
      "agent" => WorkerKind::Agent,
      "app" => WorkerKind::App,
      other => {
        return Err(invalid(format!(
          "kind must be 'agent' or 'app', got {other:?}"
        )))
      }
    };
    let mut env = Vec::with_capacity(options.env.len());
    for pair in options.env {
      let mut it = pair.into_iter();
      if let (Some(k), Some(v)) = (it.next(), it.next()) {
        env.push((k, v));
      }
    }
    let (id, pid) = self
      .core()?
      .spawn(SpawnSpec {
        kind,
        exec: options.exec,
        args: options.args,
        env,
        cwd: options.cwd,
        startup_pipe: options.startup_pipe.unwrap_or(false),
      })
      .map_err(to_napi)?;
    Ok(NativeWorkerRef { id, pid })
  }

  /// Blocks until worker `id` closes the startup pipe it was spawned with and
  /// returns what it wrote there, or null after `timeoutMs`.
  #[napi(catch_unwind)]
  pub fn read_startup(&self, id: u32, timeout_ms: u32) -> Result<Option<String>, String> {
    let answer = self
      .core()?
      .read_startup(id, Duration::from_millis(u64::from(timeout_ms)))
      .map_err(to_napi)?;
    Ok(answer.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
  }

  /// Routes an egg envelope (JSON text) on behalf of `from` (`'master'`,
  /// `'parent'`, or `'agent'`/`'app'` for messages the master relays for them)
  /// with egg's rules, and returns the `to` they chose (`'master'`,
  /// `'parent'`, `'agent'`, `'app'`, or null when it names nobody egg knows).
  /// A message for workers is queued (in the open unit, if any); one for the
  /// master or the parent is the caller's to deliver.
  #[napi(catch_unwind)]
  pub fn route(&self, from: String, json: String) -> Result<Option<&'static str>, String> {
    let sender = Sender::parse(&from).ok_or_else(|| {
      invalid(format!(
        "from must be 'master', 'parent', 'agent' or 'app', got {from:?}"
      ))
    })?;
    self
      .core()?
      .route(sender, json.into_bytes())
      .map_err(to_napi)
  }

  /// Opens a unit: what `route`, `sendRaw` and `disconnect` send until
  /// `commitUnit` reaches its recipients together, before the core relays
  /// anything a worker sends after reading part of it. Call it at the start
  /// of a tick and `commitUnit` at its end.
  #[napi(catch_unwind)]
  pub fn open_unit(&self) -> Result<(), String> {
    self.core()?.open_unit();
    Ok(())
  }

  /// Queues the open unit for its recipients (nothing when none is open).
  #[napi(catch_unwind)]
  pub fn commit_unit(&self) -> Result<(), String> {
    self.core()?.commit_unit().map_err(to_napi)
  }

  /// Sends JSON text to one worker as is (no routing). Returns false when the
  /// message was dropped (queue full or worker gone).
  #[napi(catch_unwind)]
  pub fn send_raw(&self, pid: u32, json: String) -> Result<bool, String> {
    match self.core()?.send_raw(pid, json.into_bytes()) {
      Ok(pushed) => Ok(pushed == crate::supervisor::Pushed::Queued),
      Err(CoreError::NoSuchWorker(_)) => Ok(false),
      Err(e) => Err(to_napi(e)),
    }
  }

  /// Node's `worker.disconnect()` for an app worker; closes the agent's channel.
  #[napi(catch_unwind)]
  pub fn disconnect(&self, pid: u32) -> Result<(), String> {
    self.core()?.disconnect(pid).map_err(to_napi)
  }

  /// Sends a signal (name, default SIGTERM) to a worker. False if it is gone.
  #[napi(catch_unwind)]
  pub fn kill(&self, pid: u32, signal: Option<String>) -> Result<bool, String> {
    let name = signal.unwrap_or_else(|| "SIGTERM".to_owned());
    let sig =
      sys::signal_from_name(&name).ok_or_else(|| invalid(format!("unknown signal {name:?}")))?;
    match self.core()?.kill(pid, sig) {
      Ok(sent) => Ok(sent),
      Err(CoreError::NoSuchWorker(_)) => Ok(false),
      Err(e) => Err(to_napi(e)),
    }
  }

  /// SIGTERM to a worker and its descendants, SIGKILL to what is left after
  /// `timeoutMs`; resolves once the worker has exited. Rejects with the
  /// core's `err.code` (`ERR_NO_SUCH_WORKER`, `ERR_CLOSED`).
  #[napi(ts_return_type = "Promise<void>")]
  pub fn terminate<'env>(
    &self,
    env: &'env Env,
    pid: u32,
    timeout_ms: f64,
  ) -> Result<PromiseRaw<'env, ()>> {
    // Started now, on the core's runtime; napi's future only awaits the end.
    let started = self
      .core
      .as_ref()
      .ok_or(CoreError::Closed)
      .and_then(|core| {
        let exited = core.terminate(pid, Duration::from_millis(timeout_ms.max(0.0) as u64))?;
        Ok(core.handle().spawn(exited))
      });
    // A future's error can only carry a napi `Status` (execute_tokio_future
    // takes `Into<Error>`, i.e. `Error<Status>`), so the core's error crosses
    // as data and becomes the JS error, `code` and all, on the JS thread.
    env.spawn_future_with_callback(
      async move {
        match started {
          Ok(task) => task
            .await
            .map(Ok)
            .map_err(|e| Error::new(Status::GenericFailure, format!("terminate failed: {e}"))),
          Err(e) => Ok(Err(e)),
        }
      },
      |env, outcome: std::result::Result<(), CoreError>| {
        outcome.map_err(|e| Error::from(JsError::from(to_napi(e)).into_unknown(*env)))
      },
    )
  }

  /// The workers the core knows now.
  #[napi(catch_unwind)]
  pub fn workers(&self) -> Result<Vec<NativeWorkerInfo>, String> {
    Ok(
      self
        .core()?
        .workers()
        .into_iter()
        .map(|w| NativeWorkerInfo {
          id: w.id,
          pid: w.pid,
          kind: w.kind.as_str().to_owned(),
          state: w.state.as_str().to_owned(),
          exited_after_disconnect: w.exited_after_disconnect,
          dropped_messages: w.dropped_messages as f64,
          bad_lines: w.bad_lines as f64,
          queued_bytes: w.queued_bytes as f64,
        })
        .collect(),
    )
  }

  /// Sticky sessions: listens on `port` (`host` or all interfaces) and hands
  /// each connection to the live app worker chosen from the client's IP, as
  /// `'sticky-session:connection'` with a `net.Socket` handle. Returns the
  /// bound port. `workers` is the configured number of app workers (egg's
  /// modulus; default: the live ones). Errors carry Node's `code` (e.g. `EADDRINUSE`).
  #[napi(catch_unwind)]
  pub fn listen_sticky(
    &self,
    port: u32,
    host: Option<String>,
    workers: Option<u32>,
  ) -> Result<u32, String> {
    let port = u16::try_from(port).map_err(|_| invalid(format!("port out of range: {port}")))?;
    let addr = sys::ListenAddr::Tcp {
      address: host.filter(|h| !h.is_empty()),
      port,
      ipv6_only: false,
    };
    match self
      .core()?
      .listen_sticky(addr, workers.unwrap_or(0) as usize)
    {
      Ok(local) => Ok(local.map_or(u32::from(port), |(_, _, p)| u32::from(p))),
      Err(errno) => Err(to_napi(CoreError::Listen { errno, port })),
    }
  }

  /// Stops sticky-session listening.
  #[napi(catch_unwind)]
  pub fn close_sticky(&self) -> Result<(), String> {
    self.core()?.close_sticky();
    Ok(())
  }

  /// Kills every child with SIGKILL and stops the core. Idempotent.
  #[napi(catch_unwind)]
  pub fn close(&mut self) {
    if let Some(core) = self.core.take() {
      core.close();
      // Shut the runtime down off the JS thread.
      std::thread::spawn(move || drop(core));
    }
  }
}
