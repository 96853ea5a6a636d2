//! The one error type of the core. Variants say what the core was doing;
//! `code()` is what JavaScript sees as `err.code` (the binding maps every
//! error it throws from a `CoreError`, nowhere else).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CoreError {
  #[error("I/O error while {doing}: {source}")]
  Io {
    doing: &'static str,
    #[source]
    source: std::io::Error,
  },
  #[error("no worker with pid {0}")]
  NoSuchWorker(u32),
  /// An argument from JavaScript that the core refuses (an option, a kind,
  /// a signal name, a port).
  #[error("{0}")]
  InvalidArg(String),
  /// A listen socket could not be set up: `errno` is the OS error.
  #[error("{}", listen_message(*errno, *port))]
  Listen { errno: i32, port: u16 },
  /// The `/metrics` endpoint could not listen: `errno` is the OS error.
  #[error("{}", metrics_listen_message(*errno, host, *port))]
  MetricsListen { errno: i32, host: String, port: u16 },
  #[error("the core is closed")]
  Closed,
}

impl CoreError {
  pub fn io(doing: &'static str, source: std::io::Error) -> Self {
    CoreError::Io { doing, source }
  }

  /// A stable code for JavaScript (`err.code`).
  pub fn code(&self) -> &'static str {
    match self {
      CoreError::Io { .. } => "ERR_IO",
      CoreError::NoSuchWorker(_) => "ERR_NO_SUCH_WORKER",
      CoreError::InvalidArg(_) => "ERR_INVALID_ARG_VALUE",
      // Node's code for a failed listen is the errno's name (`EADDRINUSE`)
      CoreError::Listen { errno, .. } | CoreError::MetricsListen { errno, .. } => {
        crate::sys::errno_name(*errno).unwrap_or("EUNKNOWN")
      }
      CoreError::Closed => "ERR_CLOSED",
    }
  }
}

/// Node's words for a failed listen, said of the metrics endpoint.
fn metrics_listen_message(errno: i32, host: &str, port: u16) -> String {
  match crate::sys::errno_name(errno) {
    Some("EADDRINUSE") => {
      format!("metrics: listen EADDRINUSE: address already in use {host}:{port}")
    }
    Some(name) => format!("metrics: listen {name} {host}:{port}"),
    None => format!("metrics: listen EUNKNOWN ({errno}) {host}:{port}"),
  }
}

/// Node's words for a failed listen on all interfaces.
fn listen_message(errno: i32, port: u16) -> String {
  match crate::sys::errno_name(errno) {
    Some("EADDRINUSE") => format!("listen EADDRINUSE: address already in use :::{port}"),
    Some(name) => format!("listen {name} :::{port}"),
    None => format!("listen EUNKNOWN ({errno}) :::{port}"),
  }
}

pub type Result<T> = std::result::Result<T, CoreError>;
