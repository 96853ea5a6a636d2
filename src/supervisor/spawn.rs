//! Forking a worker: the socketpair, the child's environment and fds, and
//! the three tasks each child gets (reader, writer, waiter).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use super::event::Event;
use super::outbox::{self, Outbox};
use super::worker::{Worker, WorkerKind, WorkerState};
use super::{Core, SpawnSpec};
use crate::error::{CoreError, Result};
use crate::metrics::Tally;
use crate::sys;

impl Core {
  /// Forks a child (from the calling thread) and starts watching it.
  pub fn spawn(&self, spec: SpawnSpec) -> Result<(u32, u32)> {
    if self.shared.closed.load(Ordering::Acquire) {
      return Err(CoreError::Closed);
    }
    let _enter = self.rt.enter();
    let (ours, theirs) =
      sys::ipc_socketpair().map_err(|e| CoreError::io("creating the IPC socketpair", e))?;
    let id = {
      let mut t = self.shared.table.write().map_err(|_| CoreError::Closed)?;
      match spec.kind {
        WorkerKind::App => {
          t.next_app_id += 1;
          t.next_app_id
        }
        WorkerKind::Agent => {
          t.next_agent_id += 1;
          t.next_agent_id
        }
      }
    };
    let mut cmd = tokio::process::Command::new(&spec.exec);
    cmd.args(&spec.args);
    cmd.env_clear();
    for (k, v) in &spec.env {
      if matches!(
        k.as_str(),
        "NODE_CHANNEL_FD" | "NODE_CHANNEL_SERIALIZATION_MODE" | "NODE_UNIQUE_ID"
      ) {
        continue;
      }
      cmd.env(k, v);
    }
    cmd.env("NODE_CHANNEL_FD", sys::CHILD_CHANNEL_FD.to_string());
    cmd.env("NODE_CHANNEL_SERIALIZATION_MODE", "json");
    if spec.kind == WorkerKind::App {
      cmd.env("NODE_UNIQUE_ID", id.to_string());
    }
    if let Some(cwd) = &spec.cwd {
      cmd.current_dir(cwd);
    }
    cmd.kill_on_drop(false);
    let child_fd = theirs.as_raw_fd();
    let startup = if spec.startup_pipe {
      Some(sys::startup_pipe().map_err(|e| CoreError::io("creating a startup pipe", e))?)
    } else {
      None
    };
    let startup_fd = startup.as_ref().map_or(-1, |(_, w)| w.as_raw_fd());
    let master_pid = self.shared.master_pid as libc::pid_t;
    let death_signal = self.shared.config.death_signal;
    // SAFETY: pre_exec runs the closure between fork and exec; it captures
    // only integers (no allocation, no lock) and child_setup makes only
    // async-signal-safe syscalls. The fds it names (`theirs`, the startup
    // write end) stay open here until `spawn` has returned.
    unsafe {
      cmd.pre_exec(move || sys::child_setup(child_fd, startup_fd, master_pid, death_signal));
    }
    let mut child = cmd
      .spawn()
      .map_err(|e| CoreError::io("spawning a worker", e))?;
    drop(theirs);
    if let Some((read_end, write_end)) = startup {
      drop(write_end);
      if let Ok(mut pipes) = self.startup.lock() {
        pipes.insert(id, read_end);
      }
    }
    let pid = child.id().unwrap_or(0);
    if let Some(w) = &self.shared.watchdog {
      w.add(pid);
    }
    // Readable only: writers wait for room on their own (outbox::Room).
    let registered = sys::async_fd(ours, tokio::io::Interest::READABLE);
    let sock = Arc::new(registered.map_err(|e| CoreError::io("registering the IPC channel", e))?);
    let (outbox, outbox_rx) = Outbox::new(
      self.shared.config.queue_bytes,
      self.shared.config.stall_timeout,
    );
    let (exit_tx, exit_rx) = watch::channel(None);
    let worker = Arc::new(Worker {
      id,
      pid,
      kind: spec.kind,
      state: AtomicU8::new(WorkerState::Starting as u8),
      exited_after_disconnect: AtomicBool::new(false),
      counters: Tally::new(self.shared.totals.clone()),
      slot: spec.slot,
      restarts: spec.restarts,
      started: std::time::Instant::now(),
      seq: AtomicU64::new(0),
      exit: exit_rx,
      sock: sock.clone(),
      outbox,
    });
    if let Ok(mut t) = self.shared.table.write() {
      t.workers.push(worker.clone());
    }
    self
      .shared
      .forks
      .forked(spec.kind == WorkerKind::Agent, spec.restarts);
    self.shared.emit_now(Event::Fork(worker.tag()));

    let replies = worker.outbox.handle_reply.clone();
    let writer = self
      .rt
      .spawn(outbox::run_writer(sock.clone(), outbox_rx, replies));
    let reader = self
      .rt
      .spawn(self.shared.clone().run_reader(worker.clone()));
    let shared = self.shared.clone();
    self.rt.spawn(async move {
      let status = child.wait().await;
      let (code, signal) = match status {
        Ok(st) => {
          use std::os::unix::process::ExitStatusExt;
          (st.code(), st.signal())
        }
        Err(_) => (None, None),
      };
      let _ = exit_tx.send(Some((code, signal)));
      if let Some(w) = &shared.watchdog {
        w.remove(worker.pid);
      }
      // Deliver what the worker wrote before it died, then report the exit.
      let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
      writer.abort();
      shared.forget(&worker).await;
      worker.set_state(WorkerState::Dead);
      shared
        .emit(Event::Exit {
          worker: worker.tag(),
          code,
          signal: signal.and_then(sys::signal_name).map(str::to_owned),
          exited_after_disconnect: worker.exited_after_disconnect(),
        })
        .await;
    });
    Ok((id, pid))
  }
}
