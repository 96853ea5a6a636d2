//! A worker for unit tests: records every protocol line and descriptor it
//! is sent, and lets a test wait (with a timeout) until what it was sent
//! meets a condition.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

use super::peer::Peer;

/// How long a test waits for something that should happen at once.
const WAIT: Duration = Duration::from_secs(5);

/// One line a peer was sent, parsed, with the descriptor that came with it.
pub struct Sent {
  pub line: serde_json::Value,
  pub fd: Option<OwnedFd>,
}

pub struct FakePeer {
  pub pid: u32,
  pub id: u32,
  pub app: bool,
  pub listening: AtomicBool,
  seq: AtomicU64,
  sent: Mutex<Vec<Sent>>,
  changed: Notify,
}

impl FakePeer {
  pub fn app(pid: u32, id: u32) -> Arc<FakePeer> {
    Arc::new(FakePeer {
      pid,
      id,
      app: true,
      listening: AtomicBool::new(true),
      seq: AtomicU64::new(0),
      sent: Mutex::new(Vec::new()),
      changed: Notify::new(),
    })
  }

  pub fn agent(pid: u32) -> Arc<FakePeer> {
    let mut peer = Arc::into_inner(FakePeer::app(pid, 0)).expect("just made");
    peer.app = false;
    Arc::new(peer)
  }

  /// How many lines this peer has been sent.
  pub fn count(&self) -> usize {
    self.sent.lock().expect("sent").len()
  }

  /// Waits until this peer has been sent `n` lines; returns line `n - 1`
  /// (its descriptor moves out to the caller).
  pub async fn nth(&self, n: usize) -> (serde_json::Value, Option<OwnedFd>) {
    let wait = async {
      loop {
        let changed = self.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        {
          let mut sent = self.sent.lock().expect("sent");
          if let Some(s) = sent.get_mut(n - 1) {
            return (s.line.clone(), s.fd.take());
          }
        }
        changed.await;
      }
    };
    match tokio::time::timeout(WAIT, wait).await {
      Ok(got) => got,
      Err(_) => panic!(
        "peer {} was sent {} lines, not {n}, within {WAIT:?}",
        self.pid,
        self.count()
      ),
    }
  }
}

impl Peer for FakePeer {
  fn pid(&self) -> u32 {
    self.pid
  }

  fn id(&self) -> u32 {
    self.id
  }

  fn is_app(&self) -> bool {
    self.app
  }

  fn is_listening(&self) -> bool {
    self.listening.load(Ordering::Relaxed)
  }

  fn next_seq(&self) -> u64 {
    self.seq.fetch_add(1, Ordering::Relaxed)
  }

  fn send_protocol(&self, line: Vec<u8>, fd: Option<OwnedFd>) {
    assert_eq!(
      line.last(),
      Some(&b'\n'),
      "a protocol line ends with a newline"
    );
    let line = serde_json::from_slice(&line).expect("a protocol line is JSON");
    self.sent.lock().expect("sent").push(Sent { line, fd });
    self.changed.notify_waiters();
  }
}
