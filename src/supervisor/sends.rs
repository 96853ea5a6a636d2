//! What the master's JavaScript sends: routed envelopes, raw lines and
//! disconnects, staged into the tick's unit (DESIGN.md, delivery guarantee
//! 2) and handed to the I/O thread when the tick ends. Routing is the
//! router's; this module decides only when a send reaches the queues.

use bytes::Bytes;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use super::delivery::{tick_pause, Staged};
use super::event::Event;
use super::outbox::Pushed;
use super::worker::WorkerKind;
use super::{Core, MasterWork};
use crate::error::{CoreError, Result};
use crate::ipc::message::{parse_line, Incoming};
use crate::metrics::DropReason;
use crate::router::{Destination, Sender};
use crate::sys;

/// Bytes of the master's own sends that may wait for room in workers' queues.
pub(super) const MASTER_BACKLOG_BYTES: usize = 64 << 20;

impl Core {
  /// Routes a message from the master or the parent (JSON text), and
  /// returns the `to` the router chose when it is one of egg's names. A
  /// message for workers is staged in the open unit (or queued as a unit of
  /// its own); one for the master or the parent is left to the caller, who
  /// delivers it at once, as egg-cluster does.
  pub fn route(&self, from: Sender, line: Vec<u8>) -> Result<Option<&'static str>> {
    let env = match parse_line(&line) {
      Ok(Incoming::User(env)) => env,
      Ok(Incoming::Internal { cmd, .. }) => {
        tracing::debug!(%cmd, "internal message from {} not routed", from.as_str());
        return Ok(None);
      }
      Err(e) => {
        self.shared.totals.dropped(DropReason::BadLine, 1);
        let message = format!("a message from {} is malformed: {e}", from.as_str());
        tracing::warn!("{message}");
        let error = Event::Error {
          id: None,
          pid: None,
          code: "ERR_BAD_MESSAGE",
          message,
        };
        self
          .master_tx
          .send(MasterWork::Emit(error))
          .map_err(|_| CoreError::Closed)?;
        return Ok(None);
      }
    };
    let route = self.shared.route_of(from, &env);
    let to = route.to.filter(|&to| to != "?");
    match route.destination {
      Destination::Nowhere => self.shared.no_target(None, 1),
      Destination::Master | Destination::Parent => {}
      destination => {
        let targets = self.shared.targets(destination);
        if targets.is_empty() {
          self.shared.no_target(None, 1);
        } else {
          let mut lines = Vec::new();
          let source = std::str::from_utf8(&line).unwrap_or("");
          env.encode_spliced(source, &mut lines, from.as_str(), route.to.unwrap_or(""));
          self.stage(Staged::Lines {
            targets,
            lines: Bytes::from(lines),
            messages: 1,
          })?;
        }
      }
    }
    Ok(to)
  }

  /// Opens a unit: until `commit_unit`, everything JavaScript sends is held
  /// back and then queued for its recipients together (DESIGN.md, delivery
  /// guarantee 2). Opening an open unit does nothing.
  pub fn open_unit(&self) {
    if let Ok(mut unit) = self.unit.lock() {
      unit.get_or_insert_with(Vec::new);
    }
  }

  /// Hands the open unit to the I/O thread. Without an open unit, nothing.
  pub fn commit_unit(&self) -> Result<()> {
    let staged = self.unit.lock().ok().and_then(|mut unit| unit.take());
    match staged {
      Some(staged) if !staged.is_empty() => self
        .master_tx
        .send(MasterWork::Unit(staged))
        .map_err(|_| CoreError::Closed),
      _ => Ok(()),
    }
  }

  /// Adds one send to the open unit, or queues it as a unit of its own.
  /// Messages are bounded: past `MASTER_BACKLOG_BYTES` waiting for room in
  /// workers' queues, a send is dropped with an `ERR_QUEUE_FULL` error.
  fn stage(&self, item: Staged) -> Result<()> {
    let size = item.message_bytes();
    let backlog = self.shared.master_backlog.fetch_add(size, Ordering::AcqRel) + size;
    if backlog > MASTER_BACKLOG_BYTES {
      self.shared.master_backlog.fetch_sub(size, Ordering::AcqRel);
      self
        .shared
        .totals
        .dropped(DropReason::MasterBacklog, item.deliveries());
      let message = format!(
        "the master's own sends are {backlog} bytes behind its workers' queues; dropped one of {size} bytes"
      );
      tracing::warn!("{message}");
      let _ = self.master_tx.send(MasterWork::Emit(Event::Error {
        id: None,
        pid: None,
        code: "ERR_QUEUE_FULL",
        message,
      }));
      return Ok(());
    }
    let single = {
      let mut unit = self.unit.lock().map_err(|_| CoreError::Closed)?;
      match unit.as_mut() {
        Some(open) => {
          open.push(item);
          None
        }
        None => Some(item),
      }
    };
    if let Some(pause) = tick_pause() {
      std::thread::sleep(pause);
    }
    match single {
      Some(item) => self
        .master_tx
        .send(MasterWork::Unit(vec![item]))
        .map_err(|_| CoreError::Closed),
      None => Ok(()),
    }
  }

  /// Sends raw JSON to one worker (by pid), bypassing routing; staged like
  /// `route`, so the two keep their order.
  pub fn send_raw(&self, pid: u32, mut line: Vec<u8>) -> Result<Pushed> {
    let w = self.worker_by_pid(pid)?;
    if !w.live() {
      w.counters.dropped(DropReason::TargetGone, 1);
      return Ok(Pushed::Closed);
    }
    if !w.outbox.admit_now(line.len() + 1) {
      // the outbox counted it for the worker
      self.shared.totals.dropped(DropReason::QueueFull, 1);
      return Ok(Pushed::Dropped);
    }
    line.push(b'\n');
    self.stage(Staged::Lines {
      targets: vec![w],
      lines: Bytes::from(line),
      messages: 1,
    })?;
    Ok(Pushed::Queued)
  }

  /// Node's `worker.disconnect()` for an app worker (staged like `route`,
  /// behind what was sent to it before); closes the agent's channel.
  pub fn disconnect(&self, pid: u32) -> Result<()> {
    let w = self.worker_by_pid(pid)?;
    w.exited_after_disconnect.store(true, Ordering::Release);
    match w.kind {
      WorkerKind::App => {
        let seq = w.next_seq();
        let line = format!("{{\"cmd\":\"NODE_CLUSTER\",\"act\":\"disconnect\",\"seq\":{seq}}}\n");
        self.stage(Staged::Protocol {
          target: w,
          line: Bytes::from(line),
        })?;
      }
      WorkerKind::Agent => sys::shutdown_write(w.sock.get_ref().as_raw_fd()),
    }
    Ok(())
  }
}
