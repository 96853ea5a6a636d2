//! The orphan watchdog: a tiny `/bin/sh` process that outlives a killed
//! master by `grace` and then SIGKILLs every worker it was told about (and
//! their descendants) that is still running.
//!
//! Why not only `PR_SET_PDEATHSIG`: it kills a worker the instant the master
//! dies, before it can notice the disconnect and log it (`receive disconnect
//! event …`, agent exit code 110), which egg users and tests rely on. With
//! the watchdog, healthy workers leave gracefully on the IPC EOF, and workers
//! whose event loop is blocked are still gone within `grace` plus a scan.
//!
//! Protocol on its stdin (a pipe whose write end only the master holds,
//! close-on-exec): `add <pid> <starttime>` / `del <pid>` lines. EOF means the
//! master is gone. Start times guard against pid reuse.
//!
//! Must never: keep a worker alive, kill a process it was not told about
//! (other than a registered worker's descendants), or block the master.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

const SCRIPT: &str = r#"
trap '' INT QUIT TERM HUP PIPE
grace=$1
pids=""
while read -r op pid start; do
  case $op in
    add) pids="$pids $pid:$start" ;;
    del) keep=""; for e in $pids; do [ "${e%%:*}" = "$pid" ] || keep="$keep $e"; done; pids=$keep ;;
  esac
done
[ -n "$pids" ] || exit 0
sleep "$grace"
fields() { F=""; read -r line < "/proc/$1/stat" 2>/dev/null || return 1; F=${line##*) }; }
targets=""
for e in $pids; do
  p=${e%%:*}; s=${e#*:}
  fields "$p" || continue
  set -- $F; shift 19
  [ "$1" = "$s" ] && targets="$targets $p"
done
[ -n "$targets" ] || exit 0
# freeze them first: no new children, no CPU taken from the scan below
for p in $targets; do kill -STOP "$p" 2>/dev/null; done
all=$targets; frontier=$targets
while [ -n "$frontier" ]; do
  next=""
  for d in /proc/[0-9]*; do
    c=${d#/proc/}
    fields "$c" || continue
    set -- $F
    for f in $frontier; do [ "$2" = "$f" ] && next="$next $c"; done
  done
  all="$all $next"; frontier=$next
done
for p in $all; do kill -9 "$p" 2>/dev/null; done
exit 0
"#;

pub struct Watchdog {
  pipe: Mutex<std::fs::File>,
  child: Mutex<Option<Child>>,
}

/// Field 22 of /proc/<pid>/stat (start time in clock ticks).
fn start_time(pid: u32) -> Option<String> {
  let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
  let rest = &stat[stat.rfind(')')? + 1..];
  rest.split_whitespace().nth(19).map(str::to_owned)
}

impl Watchdog {
  /// Starts the watchdog; None when `/bin/sh` cannot be started (then only
  /// the IPC EOF ends orphans, as with egg-cluster).
  pub fn start(grace: Duration) -> Option<Watchdog> {
    let (read_end, write_end) = crate::sys::pipe_cloexec().ok()?;
    let grace = format!("{:.3}", grace.as_secs_f64());
    let child = Command::new("/bin/sh")
      .arg("-c")
      .arg(SCRIPT)
      .arg("egg-cluster-rs-watchdog")
      .arg(grace)
      .stdin(Stdio::from(read_end))
      .stdout(Stdio::null())
      .stderr(Stdio::null())
      .spawn()
      .ok()?;
    Some(Watchdog {
      pipe: Mutex::new(std::fs::File::from(write_end)),
      child: Mutex::new(Some(child)),
    })
  }

  fn write(&self, line: &str) {
    if let Ok(mut pipe) = self.pipe.lock() {
      let _ = pipe.write_all(line.as_bytes());
    }
  }

  pub fn add(&self, pid: u32) {
    if let Some(start) = start_time(pid) {
      self.write(&format!("add {pid} {start}\n"));
    }
  }

  pub fn remove(&self, pid: u32) {
    self.write(&format!("del {pid}\n"));
  }
}

impl Drop for Watchdog {
  fn drop(&mut self) {
    // Closing the pipe ends it; reap it off the caller's thread.
    if let Ok(mut slot) = self.child.lock() {
      if let Some(mut child) = slot.take() {
        if let Ok(pipe) = self.pipe.get_mut() {
          let _ = pipe.flush();
        }
        let _ = std::thread::Builder::new()
          .name("watchdog-reaper".into())
          .spawn(move || {
            let _ = child.wait();
          });
      }
    }
  }
}
