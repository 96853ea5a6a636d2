//! A round-robin handle (Node's `SCHED_RR`): the master listens and accepts,
//! keeps the accepted connections pending, and hands each to the next free
//! worker as `newconn` with the connection's fd, one in flight per worker.
//! A worker's `accepted` frees it again; a refused connection, or one in
//! flight to a worker that left, goes back to the front of the queue for
//! another worker.
//!
//! Owns the listening socket, its accept task and every connection not yet
//! accepted by a worker. Must never: block, keep a connection after its
//! worker accepted it, or have more than one connection in flight to a
//! worker.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::peer::Peer;
use super::protocol::{self, unix_path, Query};
use crate::sys::{self, SockName};

/// One connection in flight to a worker, waiting for its `accepted`.
struct InFlight {
  seq: u64,
  conn: OwnedFd,
}

struct RoundRobin<P> {
  key: String,
  /// The unix socket path this handle bound (unlinked when it closes).
  path: Option<String>,
  listener: Arc<AsyncFd<OwnedFd>>,
  workers: Vec<Arc<P>>,
  /// Pids of the workers with nothing in flight, in the order they freed up.
  free: VecDeque<u32>,
  pending: VecDeque<OwnedFd>,
  in_flight: HashMap<u32, InFlight>,
  accept_task: tokio::task::JoinHandle<()>,
}

/// A round-robin handle, shared by the table of handles and its accept task.
pub(super) struct RoundRobinHandle<P>(Arc<Mutex<RoundRobin<P>>>);

impl<P> Clone for RoundRobinHandle<P> {
  fn clone(&self) -> Self {
    RoundRobinHandle(self.0.clone())
  }
}

impl<P: Peer> RoundRobinHandle<P> {
  /// Binds and listens for `q` and starts accepting on the current tokio
  /// runtime, with `first` as its only worker. Returns the handle and the
  /// bound address (none for a unix socket), or the OS errno.
  pub fn open(q: &Query, first: &Arc<P>) -> Result<(Self, Option<SockName>), i32> {
    let fd = sys::bind_socket(&q.addr, Some(q.backlog), false)?;
    sys::set_nonblocking(fd.as_raw_fd()).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let sockname = if q.pipe { None } else { sys::local_addr(&fd) };
    let registered = sys::async_fd(fd, Interest::READABLE | Interest::WRITABLE);
    let listener = Arc::new(registered.map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?);
    let rr = Arc::new_cyclic(|weak: &Weak<Mutex<RoundRobin<P>>>| {
      let weak = weak.clone();
      let accepting = listener.clone();
      let accept_task = tokio::spawn(async move {
        accept_loop(accepting, weak).await;
      });
      Mutex::new(RoundRobin {
        key: q.key.clone(),
        path: unix_path(&q.addr),
        listener,
        workers: vec![first.clone()],
        free: VecDeque::from([first.pid()]),
        pending: VecDeque::new(),
        in_flight: HashMap::new(),
        accept_task,
      })
    });
    Ok((RoundRobinHandle(rr), sockname))
  }

  fn lock(&self) -> MutexGuard<'_, RoundRobin<P>> {
    lock(&self.0)
  }

  /// Another worker listens on this handle; it is free at once. Returns the
  /// bound address (none for a unix socket).
  pub fn join(&self, w: &Arc<P>, pipe: bool) -> Option<SockName> {
    let mut g = self.lock();
    g.workers.push(w.clone());
    g.free.push_back(w.pid());
    if pipe {
      None
    } else {
      sys::local_addr(g.listener.get_ref())
    }
  }

  /// Worker `pid` answered `newconn` number `seq`. False when that is not
  /// the connection in flight to it here (nothing changes then); otherwise
  /// the connection is released (accepted) or queued again at the front
  /// (refused), the worker is free again, and pending connections move on.
  pub fn ack(&self, pid: u32, seq: u64, accepted: bool) -> bool {
    let mut g = self.lock();
    let matches = g.in_flight.get(&pid).is_some_and(|f| f.seq == seq);
    if !matches {
      return false;
    }
    if let Some(flight) = g.in_flight.remove(&pid) {
      if accepted {
        drop(flight.conn);
      } else {
        g.pending.push_front(flight.conn);
      }
    }
    if g.workers.iter().any(|x| x.pid() == pid) {
      g.free.push_back(pid);
    }
    drop(g);
    self.dispatch();
    true
  }

  /// Worker `pid` leaves; its connection in flight, if any, goes back to the
  /// front of the queue. True when no worker is left: the handle is closed
  /// then. Otherwise the caller dispatches (after releasing its own locks).
  pub fn leave(&self, pid: u32) -> bool {
    let mut g = self.lock();
    g.workers.retain(|x| x.pid() != pid);
    g.free.retain(|p| *p != pid);
    if let Some(flight) = g.in_flight.remove(&pid) {
      g.pending.push_front(flight.conn);
    }
    if g.workers.is_empty() {
      close(&mut g);
      true
    } else {
      false
    }
  }

  /// Stops the handle now (see `close`).
  pub fn close(&self) {
    close(&mut self.lock());
  }

  /// Hands pending connections to free workers, one in flight per worker.
  pub fn dispatch(&self) {
    let mut g = self.lock();
    while !g.pending.is_empty() {
      let Some(pid) = g.free.pop_front() else {
        return;
      };
      let Some(worker) = g.workers.iter().find(|w| w.pid() == pid).cloned() else {
        continue;
      };
      let Some(conn) = g.pending.pop_front() else {
        return;
      };
      let dup = match conn.try_clone() {
        Ok(d) => d,
        Err(e) => {
          tracing::warn!("could not duplicate a connection: {e}");
          g.free.push_front(pid);
          continue;
        }
      };
      let seq = worker.next_seq();
      let line = protocol::newconn(&g.key, seq);
      g.in_flight.insert(pid, InFlight { seq, conn });
      worker.send_protocol(line, Some(dup));
    }
  }

  /// Connections accepted and not yet handed to a worker.
  #[cfg(test)]
  pub fn pending(&self) -> usize {
    self.lock().pending.len()
  }
}

fn lock<P>(rr: &Mutex<RoundRobin<P>>) -> MutexGuard<'_, RoundRobin<P>> {
  match rr.lock() {
    Ok(g) => g,
    Err(poisoned) => poisoned.into_inner(),
  }
}

/// Stops a round-robin handle now: the accept task may only notice later,
/// so the listening socket is shut down here (a new listen on the same port
/// must not meet EADDRINUSE) and a unix socket path is unlinked, as libuv
/// does when it closes a pipe server.
fn close<P>(g: &mut RoundRobin<P>) {
  g.accept_task.abort();
  g.pending.clear();
  sys::shutdown_listener(g.listener.get_ref().as_raw_fd());
  if let Some(path) = g.path.take() {
    let _ = std::fs::remove_file(path);
  }
}

async fn accept_loop<P: Peer>(listener: Arc<AsyncFd<OwnedFd>>, rr: Weak<Mutex<RoundRobin<P>>>) {
  loop {
    let Ok(mut guard) = listener.readable().await else {
      return;
    };
    let mut accepted = Vec::new();
    loop {
      match sys::accept(listener.get_ref()) {
        Ok(conn) => accepted.push(conn),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
          guard.clear_ready();
          break;
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
        Err(e) => {
          tracing::warn!("accept failed: {e}");
          guard.clear_ready();
          // EMFILE and friends: back off instead of spinning.
          tokio::time::sleep(std::time::Duration::from_millis(50)).await;
          break;
        }
      }
      if accepted.len() >= 64 {
        break;
      }
    }
    let Some(rr) = rr.upgrade() else {
      return;
    };
    if !accepted.is_empty() {
      lock(&rr).pending.extend(accepted);
      RoundRobinHandle(rr).dispatch();
    }
  }
}
