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
use crate::metrics::{Counts, DropReason, Snapshot, WorkerMetrics};
use crate::router::{self, Destination, Sender};
use crate::supervisor::{Config, Core, Event, MetricsListen, SpawnSpec, WorkerKind, WorkerTag};
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
  if let Some(m) = options.metrics {
    config.metrics = Some(metrics_listen_from(m)?);
  }
  Ok(config)
}

/// `metrics: { port, host }`: a port 0…65535 (0: any free one) and an IP
/// address (default 127.0.0.1: loopback only).
fn metrics_listen_from(m: NativeMetricsOptions) -> std::result::Result<MetricsListen, CoreError> {
  let port = match m.port {
    None => DEFAULT_METRICS_PORT,
    Some(p) if p.fract() == 0.0 && (0.0..=65535.0).contains(&p) => p as u16,
    Some(p) => {
      return Err(CoreError::InvalidArg(format!(
        "options.metrics.port must be an integer from 0 to 65535, got {p}"
      )))
    }
  };
  let host = match m.host {
    None => "127.0.0.1".to_owned(),
    Some(h) => match h.parse::<std::net::IpAddr>() {
      Ok(ip) => ip.to_string(),
      Err(_) => {
        return Err(CoreError::InvalidArg(format!(
          "options.metrics.host must be an IP address such as 127.0.0.1 or ::1, got {h:?}"
        )))
      }
    },
  };
  Ok(MetricsListen { host, port })
}

/// Prometheus' conventional port for an exporter of this kind.
const DEFAULT_METRICS_PORT: u16 = 9464;

/// Where the core serves `/metrics`.
#[napi(object)]
#[derive(Default)]
pub struct NativeMetricsOptions {
  /// TCP port (default 9464; 0: any free port, see `metricsAddress()`).
  pub port: Option<f64>,
  /// IP address to listen on (default `127.0.0.1`).
  pub host: Option<String>,
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
  /// Serve the core's metrics in Prometheus' text format on `GET /metrics`
  /// (default: not served). A port in use fails the constructor with Node's
  /// `err.code` (`EADDRINUSE`).
  pub metrics: Option<NativeMetricsOptions>,
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
  /// egg's slot of an app worker (`CFORK_WORKER_INDEX`): a metrics label.
  pub slot: Option<u32>,
  /// How many times that slot was forked before (> 0: a refork).
  pub restarts: Option<u32>,
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

/// Where `/metrics` is served.
#[napi(object)]
pub struct NativeMetricsAddress {
  pub host: String,
  pub port: u32,
}

/// Messages dropped, by reason.
#[napi(object)]
pub struct NativeDrops {
  /// The recipient's queue stayed full past the stall timeout.
  pub queue_full: f64,
  /// The recipient had left when the message reached its queue.
  pub target_gone: f64,
  /// The route named no live worker (counted on the sender).
  pub no_target: f64,
  /// A line over `maxLineBytes` (counted on the sender).
  pub too_big: f64,
  /// A malformed line (counted on the sender).
  pub bad_line: f64,
  /// The master's own sends were 64 MiB behind (totals only).
  pub master_backlog: f64,
}

impl From<&Counts> for NativeDrops {
  fn from(c: &Counts) -> Self {
    let n = |r| c.dropped_for(r) as f64;
    NativeDrops {
      queue_full: n(DropReason::QueueFull),
      target_gone: n(DropReason::TargetGone),
      no_target: n(DropReason::NoTarget),
      too_big: n(DropReason::TooBig),
      bad_line: n(DropReason::BadLine),
      master_backlog: n(DropReason::MasterBacklog),
    }
  }
}

/// One worker's figures.
#[napi(object)]
pub struct NativeWorkerMetrics {
  pub id: u32,
  pub pid: u32,
  /// `'agent'` or `'app'`.
  pub kind: String,
  /// egg's slot (`CFORK_WORKER_INDEX`); absent when the forker gave none.
  pub slot: Option<u32>,
  /// `'starting'`, `'online'`, `'listening'`, `'disconnected'` or `'dead'`.
  pub state: String,
  /// Seconds since it was forked.
  pub uptime: f64,
  /// How many times its slot was forked before it; absent when the forker gave none.
  pub restarts: Option<u32>,
  /// User messages read from it (Node's internal messages not counted).
  pub messages_in: f64,
  /// Their bytes: JSON text and newline.
  pub bytes_in: f64,
  /// User messages queued for it (relayed or sent by the master).
  pub messages_out: f64,
  /// Their bytes, as queued (with `from`/`to`).
  pub bytes_out: f64,
  pub dropped: NativeDrops,
  /// All its drops.
  pub dropped_total: f64,
  /// Malformed lines read from it.
  pub bad_lines: f64,
  /// Bytes waiting in its outbound queue now.
  pub queue_bytes: f64,
}

impl From<WorkerMetrics> for NativeWorkerMetrics {
  fn from(w: WorkerMetrics) -> Self {
    NativeWorkerMetrics {
      id: w.id,
      pid: w.pid,
      kind: w.kind.to_owned(),
      slot: w.slot,
      state: w.state.to_owned(),
      uptime: w.uptime_seconds,
      restarts: w.restarts,
      messages_in: w.counts.messages_in as f64,
      bytes_in: w.counts.bytes_in as f64,
      messages_out: w.counts.messages_out as f64,
      bytes_out: w.counts.bytes_out as f64,
      dropped: NativeDrops::from(&w.counts),
      dropped_total: w.counts.dropped_total() as f64,
      bad_lines: w.counts.dropped_for(DropReason::BadLine) as f64,
      queue_bytes: w.queue_bytes as f64,
    }
  }
}

/// The cluster since the master started: every worker that ever was, and
/// the master's own sends. Counters only grow (`queueBytes` is a gauge).
#[napi(object)]
pub struct NativeTotals {
  pub messages_in: f64,
  pub bytes_in: f64,
  pub messages_out: f64,
  pub bytes_out: f64,
  pub dropped: NativeDrops,
  pub dropped_total: f64,
  pub bad_lines: f64,
  /// Bytes waiting in all workers' queues now.
  pub queue_bytes: f64,
  /// User messages queued for workers per second, over the last 10 s.
  pub relays_per_second: f64,
  /// Workers forked, by kind.
  pub agent_forks: f64,
  pub app_forks: f64,
  /// Forks into a slot that had a worker before.
  pub reforks: f64,
}

/// The master process.
#[napi(object)]
pub struct NativeMasterMetrics {
  pub pid: u32,
  /// Resident set size, bytes.
  pub rss: f64,
  /// CPU time in user mode, seconds.
  pub cpu_user: f64,
  /// CPU time in kernel mode, seconds.
  pub cpu_system: f64,
  /// Seconds since the core started.
  pub uptime: f64,
}

/// The core's figures at one moment (`metrics()`).
#[napi(object)]
pub struct NativeMetrics {
  /// The workers in the core's table, in fork order.
  pub workers: Vec<NativeWorkerMetrics>,
  pub total: NativeTotals,
  pub master: NativeMasterMetrics,
}

impl From<Snapshot> for NativeMetrics {
  fn from(s: Snapshot) -> Self {
    let t = &s.total;
    NativeMetrics {
      total: NativeTotals {
        messages_in: t.messages_in as f64,
        bytes_in: t.bytes_in as f64,
        messages_out: t.messages_out as f64,
        bytes_out: t.bytes_out as f64,
        dropped: NativeDrops::from(t),
        dropped_total: t.dropped_total() as f64,
        bad_lines: t.dropped_for(DropReason::BadLine) as f64,
        queue_bytes: s.total_queue_bytes as f64,
        relays_per_second: s.relays_per_second,
        agent_forks: s.agent_forks as f64,
        app_forks: s.app_forks as f64,
        reforks: s.reforks as f64,
      },
      master: NativeMasterMetrics {
        pid: s.master.pid,
        rss: s.master.rss_bytes as f64,
        cpu_user: s.master.cpu_user_seconds,
        cpu_system: s.master.cpu_system_seconds,
        uptime: s.master.uptime_seconds,
      },
      workers: s
        .workers
        .into_iter()
        .map(NativeWorkerMetrics::from)
        .collect(),
    }
  }
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
        slot: options.slot,
        restarts: options.restarts,
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

  /// The core's counters now, per worker and in total, the relay rate and
  /// the master process's memory and CPU: the figures `/metrics` serves.
  #[napi(catch_unwind)]
  pub fn metrics(&self) -> Result<NativeMetrics, String> {
    Ok(NativeMetrics::from(self.core()?.metrics()))
  }

  /// Where `/metrics` is served (with the bound port when 0 was asked
  /// for), or null when it is not.
  #[napi(catch_unwind)]
  pub fn metrics_address(&self) -> Result<Option<NativeMetricsAddress>, String> {
    Ok(
      self
        .core()?
        .metrics_address()
        .map(|addr| NativeMetricsAddress {
          host: addr.ip().to_string(),
          port: u32::from(addr.port()),
        }),
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
