//! Terminating a worker's process tree: SIGTERM to all of it, SIGKILL to
//! what is left after the timeout, the tree looked at again before the kill.

use std::time::Duration;

use super::worker::ExitWatch;
use crate::sys;

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
