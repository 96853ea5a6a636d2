//! Node's cluster-primary side of `server.listen()` in app workers:
//! `queryServer` answered with Node's key (`address:port:addressType:fd:index`)
//! under one of three policies, `close` and worker departure tracked, plus
//! egg's sticky sessions.
//!
//! - `RoundRobin` (Node's default on Linux): the master listens and accepts;
//!   each connection goes to the next free worker (`round_robin`).
//! - `Shared` (Node's `SCHED_NONE`): one bound socket handed to every worker.
//! - `ReusePort`: each worker gets its own `SO_REUSEPORT` socket on the same
//!   port; the kernel spreads connections with no master in the path.
//!
//! This file owns the table of handles, one per key, and answers a worker's
//! `queryServer`, `close` and `ack`. `peer` holds what listen needs of the
//! workers (the `Peer` and `LiveApps` traits, implemented by the owner of the
//! worker table: this module imports no worker type), `protocol` the request
//! and the reply lines, `round_robin` the round-robin handle, `sticky` egg's
//! sticky sessions. The submodules never import this file.
//!
//! Must never: block, keep a connection after its worker accepted it, or let
//! a worker's bad request disturb another key.

mod peer;
mod protocol;
mod round_robin;
mod sticky;

#[cfg(test)]
mod fake_peer;
#[cfg(test)]
mod tests;

pub use peer::{LiveApps, Peer};
pub use sticky::{sticky_index, sticky_listen, Sticky, StickySlots};

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ipc::message::RawObject;
use crate::sys::{self, ListenAddr, SockName};
use protocol::{unix_path, Query};
use round_robin::RoundRobinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
  RoundRobin,
  Shared,
  ReusePort,
}

impl Policy {
  pub fn parse(s: &str) -> Option<Policy> {
    match s {
      "rr" => Some(Policy::RoundRobin),
      "none" => Some(Policy::Shared),
      "reuseport" => Some(Policy::ReusePort),
      _ => None,
    }
  }
}

enum Handle<P> {
  Shared {
    fd: OwnedFd,
    pids: Vec<u32>,
    /// The unix socket path this handle bound (unlinked when it closes).
    path: Option<String>,
  },
  RoundRobin(RoundRobinHandle<P>),
  /// SO_REUSEPORT: the port every worker binds (resolved on the first bind).
  ReusePort {
    addr: ListenAddr,
    pids: Vec<u32>,
  },
}

enum Reply {
  Handle(OwnedFd),
  RoundRobin(Option<SockName>),
}

/// Every listen handle of the app workers, by Node's key.
pub struct Listeners<P> {
  policy: Policy,
  handles: Mutex<HashMap<String, Handle<P>>>,
}

impl<P: Peer> Listeners<P> {
  pub fn new(policy: Policy) -> Self {
    Listeners {
      policy,
      handles: Mutex::new(HashMap::new()),
    }
  }

  /// A worker's `queryServer`: answered with a socket, a round-robin
  /// registration or Node's negative errno. A round-robin handle opened here
  /// accepts on the current tokio runtime.
  pub fn query_server(&self, w: &Arc<P>, o: &RawObject<'_>) {
    let q = match Query::parse(o) {
      Ok(q) => q,
      Err(errno) => {
        reply_error(&**w, "", &protocol::seq_text(o), "null", errno);
        return;
      }
    };
    if !w.is_app() {
      reply_error(&**w, &q.key, &q.seq, &q.data, libc::EINVAL);
      return;
    }
    match self.add(w, &q) {
      Ok(Reply::Handle(fd)) => {
        let seq = w.next_seq();
        w.send_protocol(protocol::handle_reply(&q, seq), Some(fd));
      }
      Ok(Reply::RoundRobin(sockname)) => {
        let seq = w.next_seq();
        w.send_protocol(protocol::round_robin_reply(&q, sockname, seq), None);
        if let Some(Handle::RoundRobin(rr)) = self.lock().get(&q.key) {
          let rr = rr.clone();
          rr.dispatch();
        }
      }
      Err(errno) => {
        tracing::debug!(pid = w.pid(), key = %q.key, errno, "queryServer failed");
        reply_error(&**w, &q.key, &q.seq, &q.data, errno);
      }
    }
  }

  fn lock(&self) -> MutexGuard<'_, HashMap<String, Handle<P>>> {
    match self.handles.lock() {
      Ok(g) => g,
      Err(poisoned) => poisoned.into_inner(),
    }
  }

  fn add(&self, w: &Arc<P>, q: &Query) -> Result<Reply, i32> {
    let mut handles = self.lock();
    let policy = if q.pipe && self.policy == Policy::ReusePort {
      Policy::Shared
    } else {
      self.policy
    };
    if let Some(h) = handles.get_mut(&q.key) {
      return match h {
        Handle::Shared { fd, pids, .. } => {
          pids.push(w.pid());
          let dup = fd
            .try_clone()
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EBADF))?;
          Ok(Reply::Handle(dup))
        }
        Handle::ReusePort { addr, pids } => {
          let fd = sys::bind_socket(addr, None, true)?;
          pids.push(w.pid());
          Ok(Reply::Handle(fd))
        }
        Handle::RoundRobin(rr) => Ok(Reply::RoundRobin(rr.join(w, q.pipe))),
      };
    }
    match policy {
      Policy::Shared => {
        let fd = sys::bind_socket(&q.addr, None, false)?;
        let dup = fd
          .try_clone()
          .map_err(|e| e.raw_os_error().unwrap_or(libc::EBADF))?;
        handles.insert(
          q.key.clone(),
          Handle::Shared {
            fd,
            pids: vec![w.pid()],
            path: unix_path(&q.addr),
          },
        );
        Ok(Reply::Handle(dup))
      }
      Policy::ReusePort => {
        let fd = sys::bind_socket(&q.addr, None, true)?;
        let addr = match (&q.addr, sys::local_addr(&fd)) {
          (
            ListenAddr::Tcp {
              address, ipv6_only, ..
            },
            Some((_, _, port)),
          ) => ListenAddr::Tcp {
            address: address.clone(),
            port,
            ipv6_only: *ipv6_only,
          },
          (other, _) => other.clone(),
        };
        handles.insert(
          q.key.clone(),
          Handle::ReusePort {
            addr,
            pids: vec![w.pid()],
          },
        );
        Ok(Reply::Handle(fd))
      }
      Policy::RoundRobin => {
        let (rr, sockname) = RoundRobinHandle::open(q, w)?;
        handles.insert(q.key.clone(), Handle::RoundRobin(rr));
        Ok(Reply::RoundRobin(sockname))
      }
    }
  }

  /// A worker closed its server (`act: close`).
  pub fn close_key(&self, w: &Arc<P>, o: &RawObject<'_>) {
    let Some(key) = o.get_str("key") else {
      return;
    };
    self.remove(w.pid(), Some(&key));
  }

  /// A worker's `{ack, accepted}` for a connection we handed it.
  pub fn ack(&self, w: &Arc<P>, o: &RawObject<'_>) {
    let Some((seq, accepted)) = protocol::parse_ack(o) else {
      return;
    };
    let rrs: Vec<RoundRobinHandle<P>> = self
      .lock()
      .values()
      .filter_map(|h| match h {
        Handle::RoundRobin(rr) => Some(rr.clone()),
        _ => None,
      })
      .collect();
    for rr in rrs {
      if rr.ack(w.pid(), seq, accepted) {
        return;
      }
    }
  }

  /// A worker died: it leaves every handle; connections in flight to it go
  /// to other workers; a handle with no worker left is closed.
  pub fn remove_worker(&self, w: &Arc<P>) {
    self.remove(w.pid(), None);
  }

  fn remove(&self, pid: u32, only_key: Option<&str>) {
    let mut handles = self.lock();
    let mut empty = Vec::new();
    let mut redispatch = Vec::new();
    for (key, h) in handles.iter_mut() {
      if only_key.is_some_and(|k| k != key) {
        continue;
      }
      let now_empty = match h {
        Handle::Shared { pids, .. } | Handle::ReusePort { pids, .. } => {
          pids.retain(|p| *p != pid);
          pids.is_empty()
        }
        Handle::RoundRobin(rr) => {
          let closed = rr.leave(pid);
          if !closed {
            redispatch.push(rr.clone());
          }
          closed
        }
      };
      if now_empty {
        empty.push(key.clone());
      }
    }
    for key in empty {
      if let Some(Handle::Shared { fd, path, .. }) = handles.remove(&key) {
        // closed now, so the port (or path) is free for the next listen at once
        drop(fd);
        if let Some(path) = path {
          let _ = std::fs::remove_file(path);
        }
      }
    }
    drop(handles);
    for rr in redispatch {
      rr.dispatch();
    }
  }

  pub fn close_all(&self) {
    let mut handles = self.lock();
    for (_, h) in handles.drain() {
      match h {
        Handle::RoundRobin(rr) => rr.close(),
        Handle::Shared {
          path: Some(path), ..
        } => {
          let _ = std::fs::remove_file(path);
        }
        _ => {}
      }
    }
  }

  /// The connections a round-robin key holds, accepted and not yet handed
  /// to a worker (None: no round-robin handle under `key`).
  #[cfg(test)]
  fn pending(&self, key: &str) -> Option<usize> {
    match self.lock().get(key) {
      Some(Handle::RoundRobin(rr)) => Some(rr.pending()),
      _ => None,
    }
  }
}

fn reply_error<P: Peer + ?Sized>(w: &P, key: &str, seq: &str, data: &str, errno: i32) {
  let our_seq = w.next_seq();
  w.send_protocol(protocol::error_reply(key, seq, data, errno, our_seq), None);
}
