//! A worker's outbound queue and the task that writes it to the channel.
//!
//! The queue is bounded by bytes (a semaphore of byte permits): a router that
//! finds it full waits (pushing back on the sender by reading less) for up to
//! the stall timeout, then drops and counts; until that worker has read half
//! its queue, further messages to it drop at once, so one stuck worker delays
//! the others at most once. Lines are written in batches
//! with one `writev`; a handle travels alone and the next write waits for the
//! worker's `NODE_HANDLE_ACK` (resent on NACK up to three times, as Node).
//! Control lines (our own ACKs) bypass the queue so two sides waiting for
//! each other's ACK cannot deadlock.

use bytes::Bytes;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

use crate::sys;

/// One thing to write.
pub struct Outbound {
  pub line: Bytes,
  pub fd: Option<OwnedFd>,
  _permit: Option<OwnedSemaphorePermit>,
}

/// How a push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
  Queued,
  /// The queue stayed full past the stall timeout; the line was dropped.
  Dropped,
  /// The worker's channel is gone.
  Closed,
}

/// What the reader tells the writer about handles it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleReply {
  Ack,
  Nack,
}

pub struct Outbox {
  tx: mpsc::UnboundedSender<Outbound>,
  control: mpsc::UnboundedSender<Bytes>,
  budget: Arc<Semaphore>,
  capacity: u32,
  stall: Duration,
  /// Set when a push timed out: later pushes drop at once (they do not wait
  /// again) until the worker has read half its queue.
  stalled: std::sync::atomic::AtomicBool,
  pub dropped: AtomicU64,
  pub handle_reply: Arc<HandleReplySlot>,
}

#[derive(Default)]
pub struct HandleReplySlot {
  notify: Notify,
  reply: std::sync::Mutex<Option<HandleReply>>,
}

impl HandleReplySlot {
  pub fn set(&self, reply: HandleReply) {
    if let Ok(mut slot) = self.reply.lock() {
      *slot = Some(reply);
    }
    self.notify.notify_one();
  }

  async fn wait(&self) -> HandleReply {
    loop {
      if let Some(reply) = self.reply.lock().ok().and_then(|mut s| s.take()) {
        return reply;
      }
      self.notify.notified().await;
    }
  }
}

pub struct OutboxReceiver {
  rx: mpsc::UnboundedReceiver<Outbound>,
  control: mpsc::UnboundedReceiver<Bytes>,
}

impl Outbox {
  pub fn new(capacity_bytes: usize, stall: Duration) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let capacity = u32::try_from(capacity_bytes.max(1)).unwrap_or(u32::MAX);
    (
      Outbox {
        tx,
        control: ctl_tx,
        budget: Arc::new(Semaphore::new(capacity as usize)),
        capacity,
        stall,
        stalled: std::sync::atomic::AtomicBool::new(false),
        dropped: AtomicU64::new(0),
        handle_reply: Arc::new(HandleReplySlot::default()),
      },
      OutboxReceiver {
        rx,
        control: ctl_rx,
      },
    )
  }

  fn permits_for(&self, len: usize) -> u32 {
    u32::try_from(len)
      .unwrap_or(u32::MAX)
      .clamp(1, self.capacity)
  }

  /// False while the queue is stalled (a push found no room within the stall
  /// timeout) and not yet half drained: then every send drops at once. Once
  /// the worker has read half of it, the stall is over for every sender.
  fn past_stall(&self) -> bool {
    if !self.stalled.load(Ordering::Acquire) {
      return true;
    }
    if self.budget.available_permits() < (self.capacity / 2) as usize {
      return false;
    }
    self.stalled.store(false, Ordering::Release);
    true
  }

  /// Queues a line, waiting up to the stall timeout for room.
  pub async fn push(&self, line: Bytes, fd: Option<OwnedFd>) -> Pushed {
    if self.tx.is_closed() {
      return Pushed::Closed;
    }
    let n = self.permits_for(line.len());
    if !self.past_stall() {
      self.dropped.fetch_add(1, Ordering::Relaxed);
      return Pushed::Dropped;
    }
    let permit = match self.budget.clone().try_acquire_many_owned(n) {
      Ok(p) => p,
      Err(_) => {
        match tokio::time::timeout(self.stall, self.budget.clone().acquire_many_owned(n)).await {
          Ok(Ok(p)) => p,
          Ok(Err(_)) => return Pushed::Closed,
          Err(_) => {
            self.stalled.store(true, Ordering::Release);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Pushed::Dropped;
          }
        }
      }
    };
    self.enqueue(line, fd, Some(permit))
  }

  /// Whether a line of `len` bytes fits now; when it does not, the miss is
  /// counted as a drop (for callers that must answer at once).
  pub fn admit_now(&self, len: usize) -> bool {
    let fits =
      self.past_stall() && self.budget.available_permits() >= self.permits_for(len) as usize;
    if !fits {
      self.dropped.fetch_add(1, Ordering::Relaxed);
    }
    fits
  }

  /// Queues a protocol line that must not be lost to the byte budget (cluster
  /// replies, handles): counted against the budget only when room exists.
  pub fn push_protocol(&self, line: Bytes, fd: Option<OwnedFd>) -> Pushed {
    let n = self.permits_for(line.len());
    let permit = self.budget.clone().try_acquire_many_owned(n).ok();
    self.enqueue(line, fd, permit)
  }

  fn enqueue(
    &self,
    line: Bytes,
    fd: Option<OwnedFd>,
    permit: Option<OwnedSemaphorePermit>,
  ) -> Pushed {
    let item = Outbound {
      line,
      fd,
      _permit: permit,
    };
    match self.tx.send(item) {
      Ok(()) => Pushed::Queued,
      Err(_) => Pushed::Closed,
    }
  }

  /// Sends a control line ahead of the queue (e.g. `NODE_HANDLE_ACK`).
  pub fn control(&self, line: &'static [u8]) {
    let _ = self.control.send(Bytes::from_static(line));
  }

  /// Bytes queued and not yet written.
  pub fn queued_bytes(&self) -> usize {
    (self.capacity as usize).saturating_sub(self.budget.available_permits())
  }
}

const MAX_BATCH_ITEMS: usize = 256;
const MAX_BATCH_BYTES: usize = 1 << 20;
const MAX_HANDLE_RETRANSMISSIONS: u32 = 3;
const HANDLE_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes everything queued for one worker until the queue closes or the
/// socket fails. Returns why it stopped.
pub async fn run_writer(
  sock: Arc<AsyncFd<OwnedFd>>,
  mut rx: OutboxReceiver,
  replies: Arc<HandleReplySlot>,
) -> std::io::Result<()> {
  let mut batch: Vec<Outbound> = Vec::with_capacity(MAX_BATCH_ITEMS);
  loop {
    tokio::select! {
      biased;
      ctl = rx.control.recv() => match ctl {
        Some(line) => write_all(&sock, &[line.as_ref()]).await?,
        None => return Ok(()),
      },
      item = rx.rx.recv() => {
        let Some(first) = item else { return Ok(()) };
        if first.fd.is_some() {
          send_handle(&sock, first, &mut rx, &replies).await?;
          continue;
        }
        batch.push(first);
        let mut bytes = batch[0].line.len();
        let mut held_handle = None;
        while batch.len() < MAX_BATCH_ITEMS && bytes < MAX_BATCH_BYTES {
          match rx.rx.try_recv() {
            Ok(next) if next.fd.is_some() => {
              held_handle = Some(next);
              break;
            }
            Ok(next) => {
              bytes += next.line.len();
              batch.push(next);
            }
            Err(_) => break,
          }
        }
        let slices: Vec<&[u8]> = batch.iter().map(|o| o.line.as_ref()).collect();
        let result = write_all(&sock, &slices).await;
        batch.clear();
        result?;
        if let Some(handle) = held_handle {
          send_handle(&sock, handle, &mut rx, &replies).await?;
        }
      }
    }
  }
}

async fn send_handle(
  sock: &AsyncFd<OwnedFd>,
  item: Outbound,
  rx: &mut OutboxReceiver,
  replies: &HandleReplySlot,
) -> std::io::Result<()> {
  let Some(fd) = item.fd.as_ref() else {
    return write_all(sock, &[item.line.as_ref()]).await;
  };
  let mut attempts = 0;
  loop {
    write_with_fd(sock, &item.line, fd.as_raw_fd()).await?;
    attempts += 1;
    // Wait for the ACK, still writing control lines meanwhile.
    let reply = tokio::time::timeout(HANDLE_ACK_TIMEOUT, async {
      loop {
        tokio::select! {
          biased;
          ctl = rx.control.recv() => match ctl {
            Some(line) => write_all(sock, &[line.as_ref()]).await?,
            None => return Ok::<_, std::io::Error>(None),
          },
          reply = replies.wait() => return Ok(Some(reply)),
        }
      }
    })
    .await;
    match reply {
      Ok(Ok(Some(HandleReply::Nack))) if attempts <= MAX_HANDLE_RETRANSMISSIONS => continue,
      Ok(Ok(_)) => return Ok(()),
      Ok(Err(e)) => return Err(e),
      Err(_) => {
        tracing::warn!(
          "no NODE_HANDLE_ACK within {:?}; going on",
          HANDLE_ACK_TIMEOUT
        );
        return Ok(());
      }
    }
  }
}

/// Waits for room in a channel. The channel's own registration asks for
/// readability only: with writability in it too, every message a worker
/// reads would wake the I/O thread for nothing (the kernel signals room on
/// each read). So a write goes straight to the socket, and only a write that
/// finds it full registers a duplicate of the descriptor for writability,
/// dropped (deregistered) with this value once the write is through.
struct Room<'a> {
  sock: &'a AsyncFd<OwnedFd>,
  waiter: Option<AsyncFd<OwnedFd>>,
}

impl<'a> Room<'a> {
  fn new(sock: &'a AsyncFd<OwnedFd>) -> Self {
    Room { sock, waiter: None }
  }

  /// Runs `op` on the channel's descriptor until it does not find the
  /// socket full, waiting for room in between.
  async fn send(
    &mut self,
    mut op: impl FnMut(i32) -> std::io::Result<usize>,
  ) -> std::io::Result<usize> {
    let fd = self.sock.get_ref().as_raw_fd();
    loop {
      match op(fd) {
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        done => return done,
      }
      let waiter = match &mut self.waiter {
        Some(waiter) => waiter,
        slot @ None => {
          let dup = self.sock.get_ref().try_clone()?;
          slot.insert(sys::async_fd(dup, tokio::io::Interest::WRITABLE)?)
        }
      };
      let mut guard = waiter.writable().await?;
      // Readiness is cleared only if this attempt finds the socket full
      // again, so room freed meanwhile is never missed.
      match guard.try_io(|_| op(fd)) {
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
        Ok(done) => return done,
        Err(_would_block) => continue,
      }
    }
  }
}

async fn write_with_fd(sock: &AsyncFd<OwnedFd>, line: &[u8], fd: i32) -> std::io::Result<()> {
  let mut room = Room::new(sock);
  let mut sent_fd = false;
  let mut offset = 0;
  while offset < line.len() {
    let attach = if sent_fd { None } else { Some(fd) };
    offset += room
      .send(|s| sys::send_with_fd(s, &line[offset..], attach))
      .await?;
    sent_fd = true;
  }
  Ok(())
}

/// Writes all of `bufs` in order, resuming after partial writes.
async fn write_all(sock: &AsyncFd<OwnedFd>, bufs: &[&[u8]]) -> std::io::Result<()> {
  let mut room = Room::new(sock);
  let mut index = 0;
  let mut offset = 0;
  let mut pending: Vec<&[u8]> = Vec::with_capacity(bufs.len().min(64));
  while index < bufs.len() {
    pending.clear();
    pending.push(&bufs[index][offset..]);
    pending.extend(bufs[index + 1..].iter().take(63).copied());
    let mut n = room.send(|s| sys::send_vectored(s, &pending)).await?;
    while n > 0 && index < bufs.len() {
      let left = bufs[index].len() - offset;
      if n >= left {
        n -= left;
        index += 1;
        offset = 0;
      } else {
        offset += n;
        n = 0;
      }
    }
    while index < bufs.len() && bufs[index].len() == offset {
      index += 1;
      offset = 0;
    }
  }
  Ok(())
}

#[cfg(test)]
mod tests {
  use super::*;

  #[tokio::test]
  async fn a_full_queue_waits_once_then_drops_at_once_until_half_drained() {
    let (outbox, mut rx) = Outbox::new(100, Duration::from_millis(50));
    assert_eq!(
      outbox.push(Bytes::from(vec![b'x'; 100]), None).await,
      Pushed::Queued
    );
    let started = tokio::time::Instant::now();
    assert_eq!(
      outbox.push(Bytes::from_static(b"y"), None).await,
      Pushed::Dropped
    );
    assert!(started.elapsed() >= Duration::from_millis(50));
    let again = tokio::time::Instant::now();
    assert_eq!(
      outbox.push(Bytes::from_static(b"z"), None).await,
      Pushed::Dropped
    );
    assert!(
      again.elapsed() < Duration::from_millis(20),
      "a stalled queue drops without waiting"
    );
    assert_eq!(outbox.dropped.load(Ordering::Relaxed), 2);
    // the worker reads: room comes back and so does delivery
    drop(rx.rx.recv().await);
    assert_eq!(
      outbox.push(Bytes::from_static(b"w"), None).await,
      Pushed::Queued
    );
    assert_eq!(outbox.queued_bytes(), 1);
  }

  #[tokio::test]
  async fn a_write_that_finds_the_socket_full_waits_for_room_and_loses_nothing() {
    use std::io::Read;
    let (ours, theirs) = sys::ipc_socketpair().unwrap();
    // registered as the supervisor does: for readability only
    let sock = sys::async_fd(ours, tokio::io::Interest::READABLE).unwrap();
    // far more than a socket buffer holds, in lines of several sizes
    let lines: Vec<Vec<u8>> = (0..400u32)
      .map(|i| {
        let mut line = vec![b'a' + (i % 26) as u8; 1 + (i as usize * 997) % 40_000];
        line.push(b'\n');
        line
      })
      .collect();
    let last = b"{\"last\":true}\n";
    let mut expected: Vec<u8> = lines.concat();
    expected.extend_from_slice(last);
    let reader = std::thread::spawn(move || {
      // start late, so that the writer finds the socket full first
      std::thread::sleep(Duration::from_millis(100));
      let mut peer = std::fs::File::from(theirs);
      let mut got = Vec::new();
      let mut buf = vec![0u8; 4096];
      while got.len() < expected.len() {
        match peer.read(&mut buf) {
          Ok(0) | Err(_) => break,
          Ok(n) => got.extend_from_slice(&buf[..n]),
        }
      }
      got == expected
    });
    let slices: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    tokio::time::timeout(Duration::from_secs(20), write_all(&sock, &slices))
      .await
      .expect("the write went through once the peer read")
      .unwrap();
    // a line carrying a descriptor takes the same way (the reader drops it)
    write_with_fd(&sock, last, sock.get_ref().as_raw_fd())
      .await
      .unwrap();
    assert!(reader.join().unwrap(), "every byte arrived, in order");
  }

  #[tokio::test]
  async fn the_masters_immediate_sends_recover_from_a_stall_as_relayed_ones_do() {
    let (outbox, mut rx) = Outbox::new(100, Duration::from_millis(20));
    assert_eq!(
      outbox.push(Bytes::from(vec![b'x'; 100]), None).await,
      Pushed::Queued
    );
    assert_eq!(
      outbox.push(Bytes::from_static(b"y"), None).await,
      Pushed::Dropped
    );
    // stalled and full: refused at once, and counted
    assert!(!outbox.admit_now(1));
    assert_eq!(outbox.dropped.load(Ordering::Relaxed), 2);
    // the worker reads its queue: the next immediate send goes through
    drop(rx.rx.recv().await);
    assert!(outbox.admit_now(1));
    assert_eq!(outbox.dropped.load(Ordering::Relaxed), 2);
  }

  #[tokio::test]
  async fn protocol_lines_are_never_dropped_by_the_budget() {
    let (outbox, _rx) = Outbox::new(10, Duration::from_millis(10));
    assert_eq!(
      outbox.push(Bytes::from(vec![b'x'; 10]), None).await,
      Pushed::Queued
    );
    assert_eq!(
      outbox.push_protocol(Bytes::from_static(b"ack"), None),
      Pushed::Queued
    );
  }
}
