//! Sticky sessions, egg-cluster's way: the master listens on the app's port
//! and hands each connection, unread, to the app worker chosen from the
//! client's IP, as `'sticky-session:connection'` with a `net.Socket` handle —
//! but only among live workers, so a client is never sent to a dead one and
//! is re-homed when its worker dies.
//!
//! egg's rules (`sticky_index`, `StickySlots`, `choose`, the message
//! literal) are pure functions; the accept task is the only mechanism here
//! and its syscalls are `sys`'s. Knows workers only as `Peer`s and the live
//! app workers only through `LiveApps`.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use tokio::io::Interest;

use super::peer::{LiveApps, Peer};
use super::protocol::DEFAULT_BACKLOG;
use crate::sys::{self, ListenAddr, SockName};

/// The running sticky listener; `close` stops it.
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
pub(super) fn node_remote_address(addr: &std::net::SocketAddr) -> String {
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

/// The worker that serves a client at `ip`, among the live app workers: the
/// listening ones (every live one while none listens yet), in worker id
/// order, through `slots`. None when there is no live app worker.
pub fn choose<P: Peer>(slots: &mut StickySlots, ip: &str, live: Vec<Arc<P>>) -> Option<Arc<P>> {
  let listening: Vec<Arc<P>> = live.iter().filter(|w| w.is_listening()).cloned().collect();
  let mut workers = if listening.is_empty() {
    live
  } else {
    listening
  };
  workers.sort_by_key(|w| w.id());
  if workers.is_empty() {
    return None;
  }
  let pids: Vec<u32> = workers.iter().map(|w| w.pid()).collect();
  let pid = slots.pick(ip, &pids);
  workers.into_iter().find(|w| w.pid() == pid)
}

/// What a worker is sent with a sticky connection (egg's literal).
pub(super) const STICKY_LINE: &[u8] =
  b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":\"sticky-session:connection\"}\n";

/// Binds the sticky listener and starts its accept task on the current tokio
/// runtime; returns it and its local address, or the OS errno.
pub fn sticky_listen<L: LiveApps>(
  apps: Arc<L>,
  addr: &ListenAddr,
  workers: usize,
) -> Result<(Sticky, Option<SockName>), i32> {
  let fd = sys::bind_socket(addr, Some(DEFAULT_BACKLOG), false)?;
  sys::set_nonblocking(fd.as_raw_fd()).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
  let local = sys::local_addr(&fd);
  let registered = sys::async_fd(fd, Interest::READABLE | Interest::WRITABLE);
  let listener = registered.map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
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
            let Some(w) = choose(&mut slots, &ip, apps.live_apps()) else {
              tracing::warn!("sticky: no live app worker for a connection from {ip}; closed it");
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

  #[test]
  fn a_sticky_client_goes_to_a_listening_app_worker_counted_in_id_order() {
    use super::super::fake_peer::FakePeer;
    use std::sync::atomic::Ordering;
    // forked out of id order; "127001" % 3 == 2: the third worker by id
    let live = vec![
      FakePeer::app(30, 3),
      FakePeer::app(10, 1),
      FakePeer::app(20, 2),
    ];
    let pick = |live: &[Arc<FakePeer>]| {
      choose(&mut StickySlots::new(0), "127.0.0.1", live.to_vec()).map(|w| w.pid)
    };
    assert_eq!(pick(&live), Some(30));
    // only the listening ones count while any listens
    live[0].listening.store(false, Ordering::Relaxed);
    live[2].listening.store(false, Ordering::Relaxed);
    assert_eq!(pick(&live), Some(10));
    // while none listens yet, every live one does
    live[1].listening.store(false, Ordering::Relaxed);
    assert_eq!(pick(&live), Some(30));
    assert_eq!(pick(&[]), None);
  }
}
