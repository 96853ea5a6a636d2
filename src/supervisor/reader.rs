//! Reading a worker's channel: split it into lines, answer Node's internal
//! messages (handles, the cluster protocol), route the rest and relay it in
//! batches. egg's rules live in the router; this only applies its verdict.

use bytes::Bytes;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::delivery::Staged;
use super::event::{message_event, Event};
use super::outbox::HandleReply;
use super::worker::{Worker, WorkerKind, WorkerState};
use super::Shared;
use crate::ipc::codec::{Frame, LineDecoder};
use crate::ipc::message::{parse_line, parse_source, Envelope, Incoming, RawObject};
use crate::metrics::DropReason;
use crate::router::{Destination, Sender};
use crate::sys;

const READ_CHUNK: usize = 64 * 1024;

/// A batch is handed to its targets once it holds this many bytes.
const BATCH_BYTES: usize = 256 * 1024;

/// Consecutive lines of one read that go to the same workers, encoded into
/// one buffer: a fan-out costs one queue push per target per batch, not per
/// message, and per-sender order is kept (a batch is flushed before a line
/// for another destination).
#[derive(Default)]
struct Batch {
  destination: Option<Destination>,
  buf: Vec<u8>,
  messages: u64,
}

impl Batch {
  fn with_capacity(bytes: usize) -> Batch {
    Batch {
      buf: Vec::with_capacity(bytes),
      ..Batch::default()
    }
  }
}

impl Shared {
  pub(super) async fn run_reader(self: Arc<Self>, w: Arc<Worker>) {
    let mut decoder = LineDecoder::new(self.config.max_line_bytes);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut fds: Vec<OwnedFd> = Vec::new();
    loop {
      let n = {
        let Ok(mut guard) = w.sock.readable().await else {
          break;
        };
        match guard.try_io(|s| sys::recv_with_fds(s.get_ref().as_raw_fd(), &mut buf, &mut fds)) {
          Ok(Ok(n)) if n > 0 && n < buf.len() => {
            // A short read drained the socket: wait for the next epoll edge
            // instead of paying a read that would block. (tokio only clears
            // the readiness this guard saw, never a newer event.)
            guard.clear_ready();
            n
          }
          Ok(Ok(n)) => n,
          Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
          Ok(Err(_)) => 0,
          Err(_would_block) => continue,
        }
      };
      if !fds.is_empty() {
        let count = fds.len();
        fds.clear();
        self
          .error(
            Some(&w),
            "ERR_UNEXPECTED_HANDLE",
            format!(
              "worker {} sent {count} file descriptor(s) nobody asked for; closed them",
              w.pid
            ),
          )
          .await;
      }
      if n == 0 {
        break;
      }
      self.read_bytes.fetch_add(n as u64, Ordering::Relaxed);
      // what was read while a unit is being queued may answer part of it:
      // it waits until the whole unit is queued
      self.relay_gate.wait_open().await;
      let mut data: &[u8] = &buf[..n];
      // room for what was read plus the `from` each relayed line gains, so
      // the batch is allocated once per read instead of grown line by line
      let mut batch = Batch::with_capacity(n + n / 4 + 64);
      while let Some(frame) = decoder.next_frame(&mut data) {
        match frame {
          Frame::Line(line) => self.handle_line(&w, line, &mut batch).await,
          Frame::TooBig { seen } => {
            w.counters.dropped(DropReason::TooBig, 1);
            let max = self.config.max_line_bytes;
            self
              .error(
                Some(&w),
                "ERR_FRAME_TOO_BIG",
                format!(
                  "worker {} sent a line of more than {max} bytes ({seen} so far); dropped it",
                  w.pid
                ),
              )
              .await;
          }
        }
      }
      self.flush(Some(&w), &mut batch).await;
    }
    if w.live() {
      w.set_state(WorkerState::Disconnected);
    }
    self.emit(Event::Disconnect(w.tag())).await;
  }

  async fn handle_line(self: &Arc<Self>, w: &Arc<Worker>, line: &[u8], batch: &mut Batch) {
    // validated once: the text is also the source the envelope is spliced from
    match parse_source(line) {
      Err(e) => {
        self
          .bad_line(w, format!("worker {} sent a malformed message: {e}", w.pid))
          .await;
      }
      Ok((text, Incoming::User(env))) => {
        w.counters.read(line.len() + 1);
        if w.state() == WorkerState::Starting && w.kind == WorkerKind::Agent {
          w.set_state(WorkerState::Online);
          self.emit(Event::Online(w.tag())).await;
        }
        self
          .route_envelope(w.kind.sender(), Some(w), &env, text, batch)
          .await;
      }
      Ok((_, Incoming::Internal { cmd, object })) => {
        self.flush(Some(w), batch).await;
        self.handle_internal(w, &cmd, &object, line).await
      }
    }
  }

  /// Counts a malformed line of `w` and reports it (`ERR_BAD_MESSAGE`) at
  /// the 1st, 2nd, 4th, 8th… one, so a worker writing garbage cannot flood
  /// the master's log (egg-scripts reads stderr output as a failed start).
  async fn bad_line(&self, w: &Arc<Worker>, what: String) {
    let count = w.counters.dropped(DropReason::BadLine, 1) + 1;
    if count.is_power_of_two() {
      let message = format!("{what}; dropped it ({count} malformed line(s) from it so far)");
      self.error(Some(w), "ERR_BAD_MESSAGE", message).await;
    }
  }

  async fn handle_internal(
    self: &Arc<Self>,
    w: &Arc<Worker>,
    cmd: &str,
    object: &RawObject<'_>,
    line: &[u8],
  ) {
    match cmd {
      "NODE_HANDLE_ACK" => w.outbox.handle_reply.set(HandleReply::Ack),
      "NODE_HANDLE_NACK" => w.outbox.handle_reply.set(HandleReply::Nack),
      "NODE_HANDLE" => {
        // A handle nobody asked for: its fd is already closed; acknowledge so
        // the worker's queue goes on, and deliver the message it wrapped.
        w.outbox.control(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
        // Unwrapped one level only: a handle message inside a handle
        // message is not something Node sends, and must not recurse.
        if let Some(inner) = object.get("msg") {
          match parse_line(inner.get().as_bytes()) {
            Ok(Incoming::User(env)) => {
              w.counters.read(inner.get().len() + 1);
              let mut batch = Batch::default();
              self
                .route_envelope(w.kind.sender(), Some(w), &env, inner.get(), &mut batch)
                .await;
              self.flush(Some(w), &mut batch).await;
            }
            Ok(Incoming::Internal { cmd, .. }) => {
              tracing::debug!(pid = w.pid, %cmd, "internal message inside a handle message ignored")
            }
            Err(e) => {
              self
                .bad_line(
                  w,
                  format!(
                    "worker {} sent a handle with a malformed message: {e}",
                    w.pid
                  ),
                )
                .await
            }
          }
        }
      }
      "NODE_CLUSTER" => self.handle_cluster(w, object, line).await,
      _ => tracing::debug!(pid = w.pid, cmd, "ignored internal message"),
    }
  }

  async fn handle_cluster(self: &Arc<Self>, w: &Arc<Worker>, object: &RawObject<'_>, line: &[u8]) {
    let act = object.get_str("act");
    match act.as_deref() {
      Some("online") => {
        if w.state() == WorkerState::Starting {
          w.set_state(WorkerState::Online);
        }
        self.emit(Event::Online(w.tag())).await;
      }
      Some("queryServer") => self.listeners.query_server(w, object),
      Some("listening") => {
        w.set_state(WorkerState::Listening);
        self
          .emit(Event::Listening {
            worker: w.tag(),
            message: String::from_utf8_lossy(line).into_owned(),
          })
          .await;
      }
      Some("close") => self.listeners.close_key(w, object),
      Some("exitedAfterDisconnect") => {
        w.exited_after_disconnect.store(true, Ordering::Release);
        let ack = object.get("seq").map_or("null", |v| v.get()).to_owned();
        let seq = w.next_seq();
        let reply = format!("{{\"cmd\":\"NODE_CLUSTER\",\"ack\":{ack},\"seq\":{seq}}}\n");
        w.send_protocol(reply.into_bytes(), None);
      }
      None if object.get("ack").is_some() => self.listeners.ack(w, object),
      other => tracing::debug!(pid = w.pid, act = ?other, "ignored cluster message"),
    }
  }

  async fn route_envelope(
    self: &Arc<Self>,
    from: Sender,
    w: Option<&Arc<Worker>>,
    env: &Envelope<'_>,
    source: &str,
    batch: &mut Batch,
  ) {
    let route = self.route_of(from, env);
    match route.destination {
      Destination::Nowhere => {
        self.no_target(w, 1);
        tracing::debug!(
          from = from.as_str(),
          to = route.to,
          "message routed nowhere"
        );
      }
      Destination::Master | Destination::Parent => {
        self.flush(w, batch).await;
        self.emit_message(message_event(from, w, env, route)).await;
      }
      destination => {
        if batch.destination != Some(destination) {
          self.flush(w, batch).await;
          batch.destination = Some(destination);
        }
        env.encode_spliced(
          source,
          &mut batch.buf,
          from.as_str(),
          route.to.unwrap_or(""),
        );
        batch.messages += 1;
        if batch.buf.len() >= BATCH_BYTES {
          self.flush(w, batch).await;
        }
      }
    }
  }

  /// Counts `messages` from `from` (None: the master) that named no live worker.
  pub(super) fn no_target(&self, from: Option<&Arc<Worker>>, messages: u64) {
    match from {
      Some(w) => w.counters.dropped(DropReason::NoTarget, messages),
      None => self.totals.dropped(DropReason::NoTarget, messages),
    };
  }

  /// Hands a batch from `from` to the live workers of its destination, as
  /// one unit.
  async fn flush(&self, from: Option<&Arc<Worker>>, batch: &mut Batch) {
    let Some(destination) = batch.destination.take() else {
      return;
    };
    let messages = std::mem::take(&mut batch.messages);
    if batch.buf.is_empty() {
      return;
    }
    let lines = Bytes::from(std::mem::take(&mut batch.buf));
    let targets = self.targets(destination);
    if targets.is_empty() {
      self.no_target(from, messages);
      return;
    }
    let unit = [Staged::Lines {
      targets,
      lines,
      messages,
    }];
    self.commit(&unit, None).await;
  }
}
