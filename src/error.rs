//! The one error type of the core. Variants say what the core was doing.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CoreError {
  #[error("I/O error while {doing}: {source}")]
  Io {
    doing: &'static str,
    #[source]
    source: std::io::Error,
  },
  #[error("a line of {size} bytes exceeds the {max} byte limit")]
  FrameTooBig { size: usize, max: usize },
  #[error("malformed message: {0}")]
  BadMessage(String),
  #[error("no worker with pid {0}")]
  NoSuchWorker(u32),
  #[error("invalid option: {0}")]
  InvalidOption(String),
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
      CoreError::FrameTooBig { .. } => "ERR_FRAME_TOO_BIG",
      CoreError::BadMessage(_) => "ERR_BAD_MESSAGE",
      CoreError::NoSuchWorker(_) => "ERR_NO_SUCH_WORKER",
      CoreError::InvalidOption(_) => "ERR_INVALID_OPTION",
      CoreError::Closed => "ERR_CLOSED",
    }
  }
}

pub type Result<T> = std::result::Result<T, CoreError>;
