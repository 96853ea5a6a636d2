//! What a core is built with: its settings (`Config`, the bounds, the
//! scheduling policy, egg's routing rule, the metrics endpoint) and what to
//! spawn (`SpawnSpec`). Plain data; the binding validates what JavaScript
//! gives before it gets here.

use std::time::Duration;

use super::WorkerKind;
use crate::listen::Policy;

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
