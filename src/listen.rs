//! Node's cluster-primary side of `server.listen()` in app workers:
//! `queryServer` answered with Node's key (`address:port:addressType:fd:index`)
//! under one of three policies, `close` and worker death tracked.
//!
//! - `RoundRobin` (Node's default on Linux): the master listens and accepts;
//!   each connection goes to the next free worker as `newconn` + handle, one
//!   in flight per worker until it answers `accepted`; a refused connection,
//!   or one in flight to a worker that died, goes to another worker.
//! - `Shared` (Node's `SCHED_NONE`): one bound socket handed to every worker.
//! - `ReusePort`: each worker gets its own `SO_REUSEPORT` socket on the same
//!   port; the kernel spreads connections with no master in the path.
//!
//! Must never: block, keep a connection after its worker accepted it, or let
//! a worker's bad request disturb another key.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::ipc::message::{push_json_str, raw_as_str, RawObject};
use crate::supervisor::{Shared, Worker, WorkerKind};
use crate::sys::{self, ListenAddr, SockName};

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

const DEFAULT_BACKLOG: i32 = 511;

/// The listen request of a worker, as Node sends it.
struct Query {
  key: String,
  addr: ListenAddr,
  backlog: i32,
  pipe: bool,
  seq: String,
  data: String,
}

impl Query {
  fn parse(o: &RawObject<'_>) -> Result<Query, i32> {
    let text = |k: &str| o.get(k).map(|v| v.get().to_owned());
    let address = o
      .get("address")
      .and_then(raw_as_str)
      .map(|s| s.into_owned());
    let port_text = text("port").unwrap_or_else(|| "undefined".into());
    let address_type = o.get("addressType").map(|v| match raw_as_str(v) {
      Some(s) => s.into_owned(),
      None => v.get().to_owned(),
    });
    let address_type_text = address_type.clone().unwrap_or_else(|| "undefined".into());
    let fd_text = text("fd").unwrap_or_else(|| "undefined".into());
    let index_text = text("index").unwrap_or_else(|| "undefined".into());
    let key = format!(
      "{}:{}:{}:{}:{}",
      address.clone().unwrap_or_else(|| "null".into()),
      port_text,
      address_type_text,
      fd_text,
      index_text
    );
    let seq = text("seq").unwrap_or_else(|| "null".into());
    let data = text("data").unwrap_or_else(|| "null".into());
    let backlog = o
      .get("backlog")
      .and_then(|v| v.get().parse::<i32>().ok())
      .filter(|b| *b > 0)
      .unwrap_or(DEFAULT_BACKLOG);
    if fd_text != "undefined" && fd_text != "null" && fd_text != "-1" {
      // Listening on an inherited fd in a worker is not supported.
      return Err(libc::EBADF);
    }
    let (addr, pipe) = match address_type_text.as_str() {
      "-1" => (ListenAddr::Unix(address.clone().ok_or(libc::EINVAL)?), true),
      "4" | "6" => {
        let port = port_text.parse::<u16>().map_err(|_| libc::EINVAL)?;
        let flags = o
          .get("flags")
          .and_then(|v| v.get().parse::<u32>().ok())
          .unwrap_or(0);
        (
          ListenAddr::Tcp {
            address,
            port,
            ipv6_only: flags & 1 != 0,
          },
          false,
        )
      }
      _ => return Err(libc::ENOTSUP),
    };
    Ok(Query {
      key,
      addr,
      backlog,
      pipe,
      seq,
      data,
    })
  }
}

/// One connection in flight to a worker, waiting for its `accepted`.
struct InFlight {
  seq: u64,
  conn: OwnedFd,
}

struct RoundRobin {
  key: String,
  /// The unix socket path this handle bound (unlinked when it closes).
  path: Option<String>,
  listener: Arc<AsyncFd<OwnedFd>>,
  workers: Vec<Arc<Worker>>,
  free: VecDeque<u32>,
  pending: VecDeque<OwnedFd>,
  in_flight: HashMap<u32, InFlight>,
  accept_task: tokio::task::JoinHandle<()>,
}

enum Handle {
  Shared {
    fd: OwnedFd,
    pids: Vec<u32>,
    /// The unix socket path this handle bound (unlinked when it closes).
    path: Option<String>,
  },
  RoundRobin(Arc<Mutex<RoundRobin>>),
  /// SO_REUSEPORT: the port every worker binds (resolved on the first bind).
  ReusePort {
    addr: ListenAddr,
    pids: Vec<u32>,
  },
}

pub struct Listeners {
  policy: Policy,
  handles: Mutex<HashMap<String, Handle>>,
}

impl Listeners {
  pub fn new(policy: Policy) -> Self {
    Listeners {
      policy,
      handles: Mutex::new(HashMap::new()),
    }
  }

  pub(crate) async fn query_server(
    &self,
    shared: &Arc<Shared>,
    w: &Arc<Worker>,
    o: &RawObject<'_>,
  ) {
    let seq_text = o
      .get("seq")
      .map_or("null".to_owned(), |v| v.get().to_owned());
    let q = match Query::parse(o) {
      Ok(q) => q,
      Err(errno) => {
        reply_error(w, "", &seq_text, "null", errno);
        return;
      }
    };
    if w.kind != WorkerKind::App {
      reply_error(w, &q.key, &q.seq, &q.data, libc::EINVAL);
      return;
    }
    let outcome = self.add(shared, w, &q);
    match outcome {
      Ok(Reply::Handle(fd)) => {
        let seq = w.next_seq();
        let mut line = Vec::with_capacity(160);
        line.extend_from_slice(
          b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"cmd\":\"NODE_CLUSTER\",\"errno\":0,\"key\":",
        );
        push_json_str(&mut line, &q.key);
        line.extend_from_slice(
          format!(",\"ack\":{},\"data\":{},\"seq\":{seq}}}}}\n", q.seq, q.data).as_bytes(),
        );
        w.send_protocol(line, Some(fd));
      }
      Ok(Reply::RoundRobin(sockname)) => {
        let seq = w.next_seq();
        let mut line = Vec::with_capacity(160);
        line.extend_from_slice(b"{\"cmd\":\"NODE_CLUSTER\",\"errno\":null,\"key\":");
        push_json_str(&mut line, &q.key);
        line.extend_from_slice(format!(",\"ack\":{},\"data\":{}", q.seq, q.data).as_bytes());
        if let Some((address, family, port)) = sockname {
          line.extend_from_slice(b",\"sockname\":{\"address\":");
          push_json_str(&mut line, &address);
          line.extend_from_slice(format!(",\"family\":\"{family}\",\"port\":{port}}}").as_bytes());
        }
        line.extend_from_slice(format!(",\"seq\":{seq}}}\n").as_bytes());
        w.send_protocol(line, None);
        if let Some(Handle::RoundRobin(rr)) = self.lock().get(&q.key) {
          let rr = rr.clone();
          dispatch(&rr, shared);
        }
      }
      Err(errno) => {
        tracing::debug!(pid = w.pid, key = %q.key, errno, "queryServer failed");
        reply_error(w, &q.key, &q.seq, &q.data, errno);
      }
    }
  }

  fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
    match self.handles.lock() {
      Ok(g) => g,
      Err(poisoned) => poisoned.into_inner(),
    }
  }

  fn add(&self, shared: &Arc<Shared>, w: &Arc<Worker>, q: &Query) -> Result<Reply, i32> {
    let mut handles = self.lock();
    let policy = if q.pipe && self.policy == Policy::ReusePort {
      Policy::Shared
    } else {
      self.policy
    };
    if let Some(h) = handles.get_mut(&q.key) {
      return match h {
        Handle::Shared { fd, pids, .. } => {
          pids.push(w.pid);
          let dup = fd
            .try_clone()
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EBADF))?;
          Ok(Reply::Handle(dup))
        }
        Handle::ReusePort { addr, pids } => {
          let fd = sys::bind_socket(addr, None, true)?;
          pids.push(w.pid);
          Ok(Reply::Handle(fd))
        }
        Handle::RoundRobin(rr) => {
          let mut g = lock_rr(rr);
          g.workers.push(w.clone());
          g.free.push_back(w.pid);
          let sockname = if q.pipe {
            None
          } else {
            sys::local_addr(g.listener.get_ref())
          };
          Ok(Reply::RoundRobin(sockname))
        }
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
            pids: vec![w.pid],
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
            pids: vec![w.pid],
          },
        );
        Ok(Reply::Handle(fd))
      }
      Policy::RoundRobin => {
        let fd = sys::bind_socket(&q.addr, Some(q.backlog), false)?;
        sys::set_nonblocking(fd.as_raw_fd()).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let sockname = if q.pipe { None } else { sys::local_addr(&fd) };
        let registered = sys::async_fd(fd, Interest::READABLE | Interest::WRITABLE);
        let listener = Arc::new(registered.map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?);
        let rr = Arc::new_cyclic(|weak: &std::sync::Weak<Mutex<RoundRobin>>| {
          let weak = weak.clone();
          let listener2 = listener.clone();
          let shared2 = shared.clone();
          let accept_task = tokio::spawn(async move {
            accept_loop(listener2, weak, shared2).await;
          });
          Mutex::new(RoundRobin {
            key: q.key.clone(),
            path: unix_path(&q.addr),
            listener,
            workers: vec![w.clone()],
            free: VecDeque::from([w.pid]),
            pending: VecDeque::new(),
            in_flight: HashMap::new(),
            accept_task,
          })
        });
        handles.insert(q.key.clone(), Handle::RoundRobin(rr));
        Ok(Reply::RoundRobin(sockname))
      }
    }
  }

  /// A worker closed its server (`act: close`).
  pub(crate) async fn close_key(&self, shared: &Arc<Shared>, w: &Arc<Worker>, o: &RawObject<'_>) {
    let Some(key) = o.get_str("key") else {
      return;
    };
    self.remove(shared, w, Some(&key));
  }

  /// A worker's `{ack, accepted}` for a connection we handed it.
  pub(crate) async fn ack(&self, shared: &Arc<Shared>, w: &Arc<Worker>, o: &RawObject<'_>) {
    let Some(ack) = o.get("ack").and_then(|v| v.get().parse::<u64>().ok()) else {
      return;
    };
    let accepted = o.get("accepted").is_some_and(|v| v.get() == "true");
    let rrs: Vec<Arc<Mutex<RoundRobin>>> = self
      .lock()
      .values()
      .filter_map(|h| match h {
        Handle::RoundRobin(rr) => Some(rr.clone()),
        _ => None,
      })
      .collect();
    for rr in rrs {
      let mut g = lock_rr(&rr);
      let matches = g.in_flight.get(&w.pid).is_some_and(|f| f.seq == ack);
      if !matches {
        continue;
      }
      if let Some(flight) = g.in_flight.remove(&w.pid) {
        if accepted {
          drop(flight.conn);
        } else {
          g.pending.push_front(flight.conn);
        }
      }
      if g.workers.iter().any(|x| x.pid == w.pid) {
        g.free.push_back(w.pid);
      }
      drop(g);
      dispatch(&rr, shared);
      return;
    }
  }

  /// A worker died: it leaves every handle; connections in flight to it go
  /// to other workers; a handle with no worker left is closed.
  pub(crate) async fn remove_worker(&self, shared: &Arc<Shared>, w: &Arc<Worker>) {
    self.remove(shared, w, None);
  }

  fn remove(&self, shared: &Arc<Shared>, w: &Arc<Worker>, only_key: Option<&str>) {
    let mut handles = self.lock();
    let mut empty = Vec::new();
    let mut redispatch = Vec::new();
    for (key, h) in handles.iter_mut() {
      if only_key.is_some_and(|k| k != key) {
        continue;
      }
      let now_empty = match h {
        Handle::Shared { pids, .. } | Handle::ReusePort { pids, .. } => {
          pids.retain(|p| *p != w.pid);
          pids.is_empty()
        }
        Handle::RoundRobin(rr) => {
          let mut g = lock_rr(rr);
          g.workers.retain(|x| x.pid != w.pid);
          g.free.retain(|p| *p != w.pid);
          if let Some(flight) = g.in_flight.remove(&w.pid) {
            g.pending.push_front(flight.conn);
          }
          if g.workers.is_empty() {
            close_round_robin(&mut g);
            true
          } else {
            redispatch.push(rr.clone());
            false
          }
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
      dispatch(&rr, shared);
    }
  }

  pub fn close_all(&self) {
    let mut handles = self.lock();
    for (_, h) in handles.drain() {
      match h {
        Handle::RoundRobin(rr) => close_round_robin(&mut lock_rr(&rr)),
        Handle::Shared {
          path: Some(path), ..
        } => {
          let _ = std::fs::remove_file(path);
        }
        _ => {}
      }
    }
  }
}

enum Reply {
  Handle(OwnedFd),
  RoundRobin(Option<SockName>),
}

fn unix_path(addr: &ListenAddr) -> Option<String> {
  match addr {
    ListenAddr::Unix(path) => Some(path.clone()),
    ListenAddr::Tcp { .. } => None,
  }
}

/// Stops a round-robin handle now: the accept task may only notice later,
/// so the listening socket is shut down here (a new listen on the same port
/// must not meet EADDRINUSE) and a unix socket path is unlinked, as libuv
/// does when it closes a pipe server.
fn close_round_robin(g: &mut RoundRobin) {
  g.accept_task.abort();
  g.pending.clear();
  sys::shutdown_listener(g.listener.get_ref().as_raw_fd());
  if let Some(path) = g.path.take() {
    let _ = std::fs::remove_file(path);
  }
}

fn lock_rr(rr: &Mutex<RoundRobin>) -> std::sync::MutexGuard<'_, RoundRobin> {
  match rr.lock() {
    Ok(g) => g,
    Err(poisoned) => poisoned.into_inner(),
  }
}

fn reply_error(w: &Worker, key: &str, seq: &str, data: &str, errno: i32) {
  let our_seq = w.next_seq();
  let mut line = Vec::with_capacity(96);
  line.extend_from_slice(
    format!("{{\"cmd\":\"NODE_CLUSTER\",\"errno\":{},\"key\":", -errno).as_bytes(),
  );
  push_json_str(&mut line, key);
  line
    .extend_from_slice(format!(",\"ack\":{seq},\"data\":{data},\"seq\":{our_seq}}}\n").as_bytes());
  w.send_protocol(line, None);
}

async fn accept_loop(
  listener: Arc<AsyncFd<OwnedFd>>,
  rr: std::sync::Weak<Mutex<RoundRobin>>,
  shared: Arc<Shared>,
) {
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
      lock_rr(&rr).pending.extend(accepted);
      dispatch(&rr, &shared);
    }
  }
}

/// Hands pending connections to free workers, one in flight per worker.
fn dispatch(rr: &Arc<Mutex<RoundRobin>>, _shared: &Arc<Shared>) {
  let mut g = lock_rr(rr);
  while !g.pending.is_empty() {
    let Some(pid) = g.free.pop_front() else {
      return;
    };
    let Some(worker) = g.workers.iter().find(|w| w.pid == pid).cloned() else {
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
    let key = g.key.clone();
    let mut line = Vec::with_capacity(128);
    line.extend_from_slice(
      b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\",\"key\":",
    );
    push_json_str(&mut line, &key);
    line.extend_from_slice(format!(",\"seq\":{seq}}}}}\n").as_bytes());
    g.in_flight.insert(pid, InFlight { seq, conn });
    worker.send_protocol(line, Some(dup));
  }
}

/// Sticky sessions: the master listens on the app's port and hands each
/// connection, unread, to the app worker chosen from the client's IP, as
/// egg-cluster does (`'sticky-session:connection'` with a `net.Socket`
/// handle) — but only among live workers, so a client is never sent to a
/// dead one and is re-homed when its worker dies.
pub struct Sticky {
  task: tokio::task::JoinHandle<()>,
}

impl Sticky {
  pub fn close(&self) {
    self.task.abort();
  }
}

/// egg-cluster's choice: the decimal digits of the address as one number,
/// modulo the number of workers (computed as JavaScript's `Number` does).
pub fn sticky_index(ip: &str, workers: usize) -> usize {
  if workers == 0 {
    return 0;
  }
  let digits: String = ip.chars().filter(|c| c.is_ascii_digit()).collect();
  let n: f64 = if digits.is_empty() {
    0.0
  } else {
    digits.parse().unwrap_or(0.0)
  };
  (n % workers as f64) as usize
}

/// How Node prints a peer address (`socket.remoteAddress`).
fn node_remote_address(addr: &std::net::SocketAddr) -> String {
  match addr.ip() {
    std::net::IpAddr::V4(v4) => v4.to_string(),
    std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
      Some(v4) => format!("::ffff:{v4}"),
      None => v6.to_string(),
    },
  }
}

/// Which worker serves which client. A client's slot is egg-cluster's
/// choice (the digits of its address modulo the number of workers); a worker
/// keeps its slot as long as it lives, so only the clients of a worker that
/// died are re-homed (among the live workers), and a worker forked in its
/// place takes the empty slot, and those clients, back.
pub struct StickySlots {
  slots: Vec<Option<u32>>,
}

impl StickySlots {
  pub fn new(workers: usize) -> Self {
    StickySlots {
      slots: vec![None; workers],
    }
  }

  /// The pid (one of `live`, ordered by worker id) that serves `ip`.
  pub fn pick(&mut self, ip: &str, live: &[u32]) -> u32 {
    if self.slots.is_empty() {
      self.slots = vec![None; live.len().max(1)];
    }
    for slot in &mut self.slots {
      if slot.is_some_and(|p| !live.contains(&p)) {
        *slot = None;
      }
    }
    for &pid in live {
      if !self.slots.contains(&Some(pid)) {
        if let Some(free) = self.slots.iter_mut().find(|s| s.is_none()) {
          *free = Some(pid);
        }
      }
    }
    match self.slots[sticky_index(ip, self.slots.len())] {
      Some(pid) => pid,
      None => live[sticky_index(ip, live.len())],
    }
  }
}

const STICKY_LINE: &[u8] =
  b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":\"sticky-session:connection\"}\n";

/// Binds the sticky listener; returns it and its local address.
pub(crate) fn sticky_listen(
  shared: &Arc<Shared>,
  addr: &ListenAddr,
  workers: usize,
) -> Result<(Sticky, Option<SockName>), i32> {
  let fd = sys::bind_socket(addr, Some(DEFAULT_BACKLOG), false)?;
  sys::set_nonblocking(fd.as_raw_fd()).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
  let local = sys::local_addr(&fd);
  let registered = sys::async_fd(fd, Interest::READABLE | Interest::WRITABLE);
  let listener = registered.map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
  let shared = shared.clone();
  let mut slots = StickySlots::new(workers);
  let task = tokio::spawn(async move {
    loop {
      let Ok(mut guard) = listener.readable().await else {
        return;
      };
      loop {
        match sys::accept_with_peer(listener.get_ref()) {
          Ok((conn, peer)) => {
            let ip = peer.as_ref().map(node_remote_address).unwrap_or_default();
            let mut workers = shared.live_workers(WorkerKind::App);
            let listening: Vec<Arc<Worker>> = workers
              .iter()
              .filter(|w| w.state() == crate::supervisor::WorkerState::Listening)
              .cloned()
              .collect();
            if !listening.is_empty() {
              workers = listening;
            }
            workers.sort_by_key(|w| w.id);
            if workers.is_empty() {
              tracing::warn!("sticky: no live app worker for a connection from {ip}; closed it");
              continue;
            }
            let pids: Vec<u32> = workers.iter().map(|w| w.pid).collect();
            let pid = slots.pick(&ip, &pids);
            let Some(w) = workers.iter().find(|w| w.pid == pid) else {
              continue;
            };
            w.send_protocol(STICKY_LINE.to_vec(), Some(conn));
          }
          Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            guard.clear_ready();
            break;
          }
          Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
          Err(e) => {
            tracing::warn!("sticky accept failed: {e}");
            guard.clear_ready();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            break;
          }
        }
      }
    }
  });
  Ok((Sticky { task }, local))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn sticky_index_uses_the_digits_of_the_address_like_egg() {
    // "127001" % 4 == 1
    assert_eq!(sticky_index("127.0.0.1", 4), 1);
    assert_eq!(sticky_index("::ffff:127.0.0.1", 4), 1);
    assert_eq!(sticky_index("10.0.0.7", 3), (10007 % 3) as usize);
    assert_eq!(sticky_index("::", 2), 0);
    assert_eq!(sticky_index("1.2.3.4", 0), 0);
  }

  #[test]
  fn sticky_clients_of_surviving_workers_stay_and_a_dead_workers_clients_come_back_to_its_successor(
  ) {
    let mut slots = StickySlots::new(3);
    let ips: Vec<String> = (1..=12).map(|i| format!("127.0.0.{i}")).collect();
    let before: Vec<u32> = ips.iter().map(|ip| slots.pick(ip, &[10, 11, 12])).collect();
    // egg's rule while every worker lives: digits % 3 over the workers in id order
    for (ip, pid) in ips.iter().zip(&before) {
      assert_eq!(*pid, [10, 11, 12][sticky_index(ip, 3)], "{ip}");
    }
    // worker 11 dies: its clients move, everybody else's stay
    let during: Vec<u32> = ips.iter().map(|ip| slots.pick(ip, &[10, 12])).collect();
    for (b, d) in before.iter().zip(&during) {
      assert_ne!(*d, 11);
      if *b != 11 {
        assert_eq!(b, d);
      }
    }
    // its replacement 13 takes the empty slot and those clients back
    let after: Vec<u32> = ips.iter().map(|ip| slots.pick(ip, &[10, 12, 13])).collect();
    for (b, a) in before.iter().zip(&after) {
      assert_eq!(*a, if *b == 11 { 13 } else { *b });
    }
  }

  #[test]
  fn node_prints_mapped_addresses_with_the_ffff_prefix() {
    let a: std::net::SocketAddr = "[::ffff:10.1.2.3]:5".parse().expect("addr");
    assert_eq!(node_remote_address(&a), "::ffff:10.1.2.3");
    let b: std::net::SocketAddr = "10.1.2.3:5".parse().expect("addr");
    assert_eq!(node_remote_address(&b), "10.1.2.3");
  }
}
