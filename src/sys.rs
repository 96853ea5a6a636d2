//! Everything that talks to the operating system directly (Linux first; the
//! rest of the core goes through this module): the IPC socketpair, the
//! child's setup between fork and exec, fd passing with SCM_RIGHTS, the
//! process tree, signals and listen sockets.
//!
//! Must never: allocate or lock between fork and exec (`child_setup` only
//! makes raw async-signal-safe syscalls), or leave a descriptor inheritable
//! except the one end handed to a child on purpose.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};
use tokio::io::unix::AsyncFd;

/// The fd number Node expects its IPC channel on (`NODE_CHANNEL_FD`).
pub const CHILD_CHANNEL_FD: RawFd = 3;

/// Returns the allocator's free pages to the system (glibc keeps freed
/// memory in its arenas for reuse; `malloc_trim` hands back what is free).
pub fn release_free_memory() {
  #[cfg(target_env = "gnu")]
  // SAFETY: malloc_trim only walks the allocator's own free lists.
  unsafe {
    libc::malloc_trim(0);
  }
}

/// The fd a child started with a startup pipe finds its write end on.
pub const CHILD_STARTUP_FD: RawFd = 4;

/// A pipe for one early answer from a child (see `SpawnSpec::startup_pipe`):
/// (the master's read end, blocking; the child's write end), both
/// close-on-exec until `child_setup` moves the write end to fd 4.
pub fn startup_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
  pipe_cloexec()
}

/// A pipe, both ends close-on-exec and blocking: (read end, write end).
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
  Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

/// Reads `fd` until end of file, at most `max` bytes (the rest is left
/// unread), waiting at most `timeout` in all: `Ok(None)` when it ran out.
pub fn read_to_eof(
  fd: &OwnedFd,
  max: usize,
  timeout: std::time::Duration,
) -> io::Result<Option<Vec<u8>>> {
  let deadline = std::time::Instant::now() + timeout;
  let mut out = Vec::new();
  let mut buf = [0u8; 4096];
  loop {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    if left.is_zero() {
      return Ok(None);
    }
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut pfd = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    // whole milliseconds, at least 1, at most i32::MAX (PollTimeout::MAX)
    let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
    let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
    let ready = match nix::poll::poll(&mut pfd, timeout) {
      Ok(ready) => ready,
      Err(Errno::EINTR) => continue,
      Err(e) => return Err(e.into()),
    };
    if ready == 0 {
      continue;
    }
    let room = buf.len().min(max.saturating_sub(out.len()));
    if room == 0 {
      return Ok(Some(out));
    }
    let n = match nix::unistd::read(fd.as_raw_fd(), &mut buf[..room]) {
      Ok(n) => n,
      Err(Errno::EINTR | Errno::EAGAIN) => continue,
      Err(e) => return Err(e.into()),
    };
    if n == 0 {
      return Ok(Some(out));
    }
    out.extend_from_slice(&buf[..n]);
  }
}

/// A TCP port nothing listens on, found as Node's `listen(0)` finds one:
/// bound on every address (dual-stack `::`, else `0.0.0.0`), then released.
pub fn free_port() -> io::Result<u16> {
  let addr = ListenAddr::Tcp {
    address: None,
    port: 0,
    ipv6_only: false,
  };
  let fd = bind_socket(&addr, None, false).map_err(io::Error::from_raw_os_error)?;
  local_addr(&fd)
    .map(|(_, _, port)| port)
    .ok_or_else(|| io::Error::other("a bound socket without a local address"))
}

/// A connected `AF_UNIX, SOCK_STREAM` pair, both ends close-on-exec; the
/// master's end is non-blocking.
pub fn ipc_socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
  let (ours, theirs) = socket::socketpair(
    socket::AddressFamily::Unix,
    socket::SockType::Stream,
    None,
    socket::SockFlag::SOCK_CLOEXEC,
  )?;
  set_nonblocking(ours.as_raw_fd())?;
  Ok((ours, theirs))
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
  use nix::fcntl::{fcntl, FcntlArg, OFlag};
  let flags = fcntl(fd, FcntlArg::F_GETFL)?;
  fcntl(
    fd,
    FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
  )?;
  Ok(())
}

/// Registers an owned descriptor with the tokio reactor (which must be
/// current) for `interest`; the `AsyncFd` owns and finally closes it.
pub fn async_fd(fd: OwnedFd, interest: tokio::io::Interest) -> io::Result<AsyncFd<OwnedFd>> {
  // SAFETY: tokio requires the fd to stay open, and `as_raw_fd` to return
  // the same number, for the AsyncFd's whole life: an OwnedFd moved into it
  // is closed only when the AsyncFd drops it, and nothing can swap it.
  let registered = unsafe { AsyncFd::register_with_interest(fd, interest) };
  registered.map_err(io::Error::from)
}

/// Runs in the child between fork and exec: async-signal-safe calls only.
/// Moves the channel to fd 3 and `startup_fd` (when >= 0) to fd 4, both
/// inheritable, keeps stdio inherited, asks for `death_signal` when the
/// forking thread dies, closes the race where the master died first, and
/// resets signal dispositions as libuv does for its children.
///
/// # Safety
/// Only call from a `pre_exec` hook.
// SAFETY: sound only in a freshly forked child (it rewires fds 0-4 and the
// signal state), hence callers must uphold that; the body makes raw libc
// calls only, as nothing that may allocate or lock is allowed there.
pub unsafe fn child_setup(
  channel_fd: RawFd,
  startup_fd: RawFd,
  master_pid: libc::pid_t,
  death_signal: libc::c_int,
) -> io::Result<()> {
  // out of the way of fds 3 and 4 first, so neither dup2 below can clobber it
  let startup = if startup_fd >= 0 {
    let moved = libc::fcntl(startup_fd, libc::F_DUPFD, 10);
    if moved < 0 {
      return Err(io::Error::last_os_error());
    }
    moved
  } else {
    -1
  };
  if channel_fd == CHILD_CHANNEL_FD {
    let flags = libc::fcntl(channel_fd, libc::F_GETFD);
    if flags < 0 || libc::fcntl(channel_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
      return Err(io::Error::last_os_error());
    }
  } else if libc::dup2(channel_fd, CHILD_CHANNEL_FD) < 0 {
    return Err(io::Error::last_os_error());
  }
  if startup >= 0 {
    if libc::dup2(startup, CHILD_STARTUP_FD) < 0 {
      return Err(io::Error::last_os_error());
    }
    libc::close(startup);
  }
  // Node's own stdio descriptors may be close-on-exec in the master; the
  // child inherits them as libuv's fork does.
  for fd in 0..3 {
    let flags = libc::fcntl(fd, libc::F_GETFD);
    if flags >= 0 && flags & libc::FD_CLOEXEC != 0 {
      libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
    }
  }
  if death_signal > 0 {
    if libc::prctl(
      libc::PR_SET_PDEATHSIG,
      death_signal as libc::c_ulong,
      0,
      0,
      0,
    ) != 0
    {
      return Err(io::Error::last_os_error());
    }
    if libc::getppid() != master_pid {
      return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
  }
  for sig in 1..32 {
    if sig != libc::SIGKILL && sig != libc::SIGSTOP {
      libc::signal(sig, libc::SIG_DFL);
    }
  }
  let mut empty: libc::sigset_t = std::mem::zeroed();
  libc::sigemptyset(&mut empty);
  libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
  Ok(())
}

/// Room for the fds one `recvmsg` may carry: Linux's SCM_MAX_FD, the most
/// one message can hold. Node sends one per message; a hostile worker may
/// send more, which we take and close. A smaller buffer would truncate the
/// control data (MSG_CTRUNC), and nix then gives no access to the fds that
/// did arrive, which would leak them.
const MAX_FDS_PER_READ: usize = 253;

thread_local! {
  /// The control buffer for `recv_with_fds`, reused so that a read does not
  /// allocate (nix reads only its capacity; its length stays 0).
  static CMSG_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(
    // one SCM_RIGHTS cmsg at its largest, plus room for a credentials one
    Vec::with_capacity(
      socket::cmsg_space::<[RawFd; MAX_FDS_PER_READ]>() + socket::cmsg_space::<libc::ucred>(),
    ),
  );
}

/// `recvmsg` into `buf`; received descriptors (close-on-exec) are pushed onto
/// `fds`. Returns the byte count (0 at EOF).
pub fn recv_with_fds(fd: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
  CMSG_BUF.with(|control| {
    let mut control = control.borrow_mut();
    let mut iov = [IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<()>(fd, &mut iov, Some(&mut control), MsgFlags::MSG_CMSG_CLOEXEC)?;
    match msg.cmsgs() {
      Ok(cmsgs) => {
        for cmsg in cmsgs {
          if let ControlMessageOwned::ScmRights(raw_fds) = cmsg {
            for raw in raw_fds.into_iter().filter(|&raw| raw >= 0) {
              // SAFETY: the kernel just installed this descriptor in our
              // table for this message (SCM_RIGHTS); nothing else knows its
              // number, so the OwnedFd is its only owner and closes it.
              fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
          }
        }
      }
      // MSG_CTRUNC: cannot happen with room for SCM_MAX_FD descriptors
      Err(e) => tracing::warn!("recvmsg: control data truncated ({e}); descriptors may leak"),
    }
    Ok(msg.bytes)
  })
}

/// `sendmsg` of `data`, with `fd` attached as SCM_RIGHTS when given.
pub fn send_with_fd(sock: RawFd, data: &[u8], fd: Option<RawFd>) -> io::Result<usize> {
  let iov = [IoSlice::new(data)];
  let attached;
  let cmsgs: &[ControlMessage] = match fd {
    Some(fd) => {
      attached = [fd];
      &[ControlMessage::ScmRights(&attached)]
    }
    None => &[],
  };
  Ok(socket::sendmsg::<()>(
    sock,
    &iov,
    cmsgs,
    MsgFlags::MSG_NOSIGNAL,
    None,
  )?)
}

/// `writev` of several buffers (no fds), MSG_NOSIGNAL semantics via sendmsg.
pub fn send_vectored(sock: RawFd, bufs: &[&[u8]]) -> io::Result<usize> {
  let iovs: Vec<IoSlice> = bufs.iter().map(|b| IoSlice::new(b)).collect();
  Ok(socket::sendmsg::<()>(
    sock,
    &iovs,
    &[],
    MsgFlags::MSG_NOSIGNAL,
    None,
  )?)
}

/// Shuts down the writing side of a socket (the peer reads EOF).
pub fn shutdown_write(sock: RawFd) {
  // errors (already closed) are irrelevant
  let _ = socket::shutdown(sock, socket::Shutdown::Write);
}

/// Stops a listening socket from listening now, even while other owners of
/// the descriptor keep it open: its port can be bound again at once.
pub fn shutdown_listener(sock: RawFd) {
  // errors (not connected) are irrelevant
  let _ = socket::shutdown(sock, socket::Shutdown::Both);
}

/// Every descendant of `pid` (children, grandchildren, …), read from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
  let Ok(dir) = std::fs::read_dir("/proc") else {
    return Vec::new();
  };
  let mut parent_of: Vec<(u32, u32)> = Vec::new();
  for entry in dir.flatten() {
    let name = entry.file_name();
    let Some(child) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
      continue;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
      continue;
    };
    // "pid (comm) state ppid …": comm may hold spaces and parens; take the last ')'.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
      continue;
    };
    let mut fields = rest.split_whitespace();
    let _state = fields.next();
    if let Some(ppid) = fields.next().and_then(|s| s.parse::<u32>().ok()) {
      parent_of.push((child, ppid));
    }
  }
  let mut found = Vec::new();
  let mut frontier = vec![pid];
  while let Some(p) = frontier.pop() {
    for &(child, ppid) in &parent_of {
      if ppid == p && !found.contains(&child) {
        found.push(child);
        frontier.push(child);
      }
    }
  }
  found
}

/// Sends `signal` to `pid`; false if it no longer exists.
pub fn kill(pid: u32, signal: i32) -> bool {
  let Ok(pid) = libc::pid_t::try_from(pid) else {
    return false;
  };
  if pid <= 0 {
    return false;
  }
  // 0 probes for existence; a number with no `Signal` (kill(2) would fail
  // with EINVAL) sends nothing.
  let signal = match signal {
    0 => None,
    s => match nix::sys::signal::Signal::try_from(s) {
      Ok(s) => Some(s),
      Err(_) => return false,
    },
  };
  nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).is_ok()
}

/// Whether a process exists (and is not a zombie we could still signal).
pub fn alive(pid: u32) -> bool {
  kill(pid, 0)
}

pub fn getpid() -> u32 {
  std::process::id()
}

/// This process's resident memory and CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessUsage {
  pub rss_bytes: u64,
  pub user_cpu_seconds: f64,
  pub system_cpu_seconds: f64,
}

/// Reads this process's usage: RSS from `/proc/self/statm` (0 where there is
/// no procfs), CPU time from `getrusage(RUSAGE_SELF)`.
pub fn process_usage() -> ProcessUsage {
  use nix::sys::resource::{getrusage, UsageWho};
  let rss_bytes = std::fs::read_to_string("/proc/self/statm")
    .ok()
    .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
    .map_or(0, |pages| pages * page_size());
  let (user_cpu_seconds, system_cpu_seconds) = getrusage(UsageWho::RUSAGE_SELF)
    .map(|u| {
      let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
      (secs(u.user_time()), secs(u.system_time()))
    })
    .unwrap_or_default();
  ProcessUsage {
    rss_bytes,
    user_cpu_seconds,
    system_cpu_seconds,
  }
}

fn page_size() -> u64 {
  nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
    .ok()
    .flatten()
    .and_then(|v| u64::try_from(v).ok())
    .unwrap_or(4096)
}

const SIGNALS: &[(&str, i32)] = &[
  ("SIGHUP", libc::SIGHUP),
  ("SIGINT", libc::SIGINT),
  ("SIGQUIT", libc::SIGQUIT),
  ("SIGILL", libc::SIGILL),
  ("SIGTRAP", libc::SIGTRAP),
  ("SIGABRT", libc::SIGABRT),
  ("SIGBUS", libc::SIGBUS),
  ("SIGFPE", libc::SIGFPE),
  ("SIGKILL", libc::SIGKILL),
  ("SIGUSR1", libc::SIGUSR1),
  ("SIGSEGV", libc::SIGSEGV),
  ("SIGUSR2", libc::SIGUSR2),
  ("SIGPIPE", libc::SIGPIPE),
  ("SIGALRM", libc::SIGALRM),
  ("SIGTERM", libc::SIGTERM),
  ("SIGCHLD", libc::SIGCHLD),
  ("SIGCONT", libc::SIGCONT),
  ("SIGSTOP", libc::SIGSTOP),
  ("SIGTSTP", libc::SIGTSTP),
  ("SIGTTIN", libc::SIGTTIN),
  ("SIGTTOU", libc::SIGTTOU),
  ("SIGURG", libc::SIGURG),
  ("SIGXCPU", libc::SIGXCPU),
  ("SIGXFSZ", libc::SIGXFSZ),
  ("SIGVTALRM", libc::SIGVTALRM),
  ("SIGPROF", libc::SIGPROF),
  ("SIGWINCH", libc::SIGWINCH),
  ("SIGIO", libc::SIGIO),
  ("SIGPWR", libc::SIGPWR),
  ("SIGSYS", libc::SIGSYS),
];

/// Node's name for a few errno values a listen can fail with.
pub fn errno_name(errno: i32) -> Option<&'static str> {
  Some(match errno {
    libc::EADDRINUSE => "EADDRINUSE",
    libc::EACCES => "EACCES",
    libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
    libc::EINVAL => "EINVAL",
    libc::ENOTSUP => "ENOTSUP",
    libc::EBADF => "EBADF",
    libc::EMFILE => "EMFILE",
    _ => return None,
  })
}

pub fn signal_from_name(name: &str) -> Option<i32> {
  SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

pub fn signal_name(signal: i32) -> Option<&'static str> {
  SIGNALS.iter().find(|(_, s)| *s == signal).map(|(n, _)| *n)
}

/// Options of a listen socket the master creates for its workers.
#[derive(Debug, Clone)]
pub enum ListenAddr {
  /// `None` address: dual-stack `::`, falling back to `0.0.0.0` (as Node).
  Tcp {
    address: Option<String>,
    port: u16,
    ipv6_only: bool,
  },
  Unix(String),
}

/// Creates, binds (and, when `listen` is set, listens on) a socket.
/// Returns the raw OS errno on failure so it can be reported as Node does.
pub fn bind_socket(
  addr: &ListenAddr,
  listen: Option<i32>,
  reuse_port: bool,
) -> Result<OwnedFd, i32> {
  use socket2::{Domain, SockAddr, Socket, Type};
  let errno = |e: io::Error| e.raw_os_error().unwrap_or(libc::EINVAL);
  let socket = match addr {
    ListenAddr::Unix(path) => {
      let s = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None).map_err(errno)?;
      let sa = SockAddr::unix(path).map_err(errno)?;
      s.bind(&sa).map_err(errno)?;
      s
    }
    ListenAddr::Tcp {
      address,
      port,
      ipv6_only,
    } => {
      let candidates: Vec<std::net::SocketAddr> = match address {
        None => vec![
          std::net::SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), *port),
          std::net::SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), *port),
        ],
        Some(a) => match a.parse::<std::net::IpAddr>() {
          Ok(ip) => vec![std::net::SocketAddr::new(ip, *port)],
          Err(_) => return Err(libc::EINVAL),
        },
      };
      let mut last = libc::EADDRNOTAVAIL;
      let mut bound = None;
      for sa in candidates {
        let domain = if sa.is_ipv6() {
          Domain::IPV6
        } else {
          Domain::IPV4
        };
        let s = Socket::new(domain, Type::STREAM.cloexec(), None).map_err(errno)?;
        s.set_reuse_address(true).map_err(errno)?;
        if reuse_port {
          s.set_reuse_port(true).map_err(errno)?;
        }
        if sa.is_ipv6() {
          let _ = s.set_only_v6(*ipv6_only);
        }
        match s.bind(&sa.into()) {
          Ok(()) => {
            bound = Some(s);
            break;
          }
          Err(e) => last = errno(e),
        }
      }
      bound.ok_or(last)?
    }
  };
  // Non-blocking, as libuv's own sockets are: workers that receive it never
  // set the flag themselves, and a blocking listen socket shared by several
  // workers leaves the ones that lose an accept race blocked in accept().
  socket.set_nonblocking(true).map_err(errno)?;
  if let Some(backlog) = listen {
    socket.listen(backlog).map_err(errno)?;
  }
  Ok(socket.into())
}

/// A socket's address as Node reports it: (address, family, port).
pub type SockName = (String, &'static str, u16);

/// The local address of a bound socket.
pub fn local_addr(fd: &impl AsFd) -> Option<SockName> {
  let addr = socket2::SockRef::from(fd).local_addr().ok()?;
  let sa = addr.as_socket()?;
  let family = if sa.is_ipv6() { "IPv6" } else { "IPv4" };
  Some((sa.ip().to_string(), family, sa.port()))
}

/// Accepts one connection, non-blocking and close-on-exec (a worker's libuv
/// takes a received socket as it is: a blocking one would stall its loop);
/// WouldBlock when none is waiting.
pub fn accept(listener: &impl AsFd) -> io::Result<OwnedFd> {
  accept_with_peer(listener).map(|(conn, _)| conn)
}

/// Accepts one connection (as `accept`) and tells who the peer is.
pub fn accept_with_peer(
  listener: &impl AsFd,
) -> io::Result<(OwnedFd, Option<std::net::SocketAddr>)> {
  let (conn, peer) =
    socket2::SockRef::from(listener).accept4(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)?;
  Ok((conn.into(), peer.as_socket()))
}

#[cfg(test)]
mod tests {
  use super::*;

  fn loopback(port: u16) -> ListenAddr {
    ListenAddr::Tcp {
      address: Some("127.0.0.1".into()),
      port,
      ipv6_only: false,
    }
  }

  #[test]
  fn this_process_has_resident_memory_and_cpu_time() {
    let spin = std::time::Instant::now();
    while spin.elapsed() < std::time::Duration::from_millis(20) {}
    let usage = process_usage();
    assert!(usage.rss_bytes > 1 << 20, "{usage:?}");
    assert!(
      usage.user_cpu_seconds + usage.system_cpu_seconds > 0.0,
      "{usage:?}"
    );
  }

  #[test]
  fn a_free_port_can_be_bound_again() {
    let port = free_port().expect("a free port");
    assert_ne!(port, 0);
    let addr = ListenAddr::Tcp {
      address: None,
      port,
      ipv6_only: false,
    };
    assert!(bind_socket(&addr, Some(16), false).is_ok());
  }

  #[test]
  fn a_startup_pipe_answers_until_eof_or_times_out() {
    let (read_end, write_end) = startup_pipe().expect("a pipe");
    let short = std::time::Duration::from_millis(50);
    // nothing written yet, writer still open: the wait runs out
    assert_eq!(read_to_eof(&read_end, 16, short).expect("read"), None);
    let n = nix::unistd::write(&write_end, b"{\"ok\":1}").expect("write");
    assert_eq!(n, 8);
    drop(write_end);
    let answer = read_to_eof(&read_end, 16, short).expect("read");
    assert_eq!(answer.as_deref(), Some(&b"{\"ok\":1}"[..]));
    // an answer over the cap is cut at the cap
    let (r2, w2) = startup_pipe().expect("a pipe");
    nix::unistd::write(&w2, b"0123456789").expect("write");
    drop(w2);
    assert_eq!(
      read_to_eof(&r2, 4, short).expect("read").as_deref(),
      Some(&b"0123"[..])
    );
  }

  #[test]
  fn signal_names_round_trip() {
    assert_eq!(signal_from_name("SIGTERM"), Some(libc::SIGTERM));
    assert_eq!(signal_name(libc::SIGKILL), Some("SIGKILL"));
    assert_eq!(signal_from_name("SIGNOPE"), None);
    // `kill` sends only what nix knows as a `Signal`: every named one
    for (name, number) in SIGNALS {
      assert!(
        nix::sys::signal::Signal::try_from(*number).is_ok(),
        "{name}"
      );
    }
    assert!(kill(std::process::id(), 0));
  }

  #[test]
  fn every_descriptor_of_a_message_is_received_and_owned() {
    let (a, b) = ipc_socketpair().expect("socketpair");
    let (x, _y) = ipc_socketpair().expect("second pair");
    // more than Node ever sends, as a hostile worker might
    let many = vec![x.as_raw_fd(); 40];
    socket::sendmsg::<()>(
      b.as_raw_fd(),
      &[IoSlice::new(b"x")],
      &[ControlMessage::ScmRights(&many)],
      MsgFlags::MSG_NOSIGNAL,
      None,
    )
    .expect("send");
    let mut buf = [0u8; 8];
    let mut fds = Vec::new();
    let n = recv_with_fds(a.as_raw_fd(), &mut buf, &mut fds).expect("recv");
    assert_eq!(n, 1);
    assert_eq!(fds.len(), 40);
    for fd in &fds {
      let flags =
        nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).expect("F_GETFD");
      assert_ne!(flags & libc::FD_CLOEXEC, 0);
    }
  }

  #[test]
  fn a_socketpair_carries_bytes_and_a_descriptor() {
    let (a, b) = ipc_socketpair().expect("socketpair");
    let (x, _y) = ipc_socketpair().expect("second pair");
    send_with_fd(
      b.as_raw_fd(),
      b"{\"cmd\":\"NODE_HANDLE\"}\n",
      Some(x.as_raw_fd()),
    )
    .expect("send");
    let mut buf = [0u8; 64];
    let mut fds = Vec::new();
    let n = recv_with_fds(a.as_raw_fd(), &mut buf, &mut fds).expect("recv");
    assert_eq!(&buf[..n], b"{\"cmd\":\"NODE_HANDLE\"}\n");
    assert_eq!(fds.len(), 1);
  }

  #[test]
  fn descendants_of_this_process_include_a_spawned_child() {
    let mut child = std::process::Command::new("sleep")
      .arg("5")
      .spawn()
      .expect("spawn sleep");
    let found = descendants(std::process::id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(found.contains(&child.id()));
  }

  #[test]
  fn sockets_handed_to_workers_are_non_blocking() {
    let addr = loopback(0);
    let listener = bind_socket(&addr, Some(16), false).expect("bind");
    let is_nonblocking = |fd: RawFd| {
      let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).expect("F_GETFL");
      flags & libc::O_NONBLOCK != 0
    };
    assert!(is_nonblocking(listener.as_raw_fd()));
    let port = local_addr(&listener).expect("addr").2;
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut conn = None;
    for _ in 0..100 {
      match accept(&listener) {
        Ok(c) => {
          conn = Some(c);
          break;
        }
        Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
      }
    }
    let conn = conn.expect("accepted");
    assert!(is_nonblocking(conn.as_raw_fd()));
  }

  #[test]
  fn binding_a_busy_port_reports_eaddrinuse() {
    let addr = loopback(0);
    let first = bind_socket(&addr, Some(16), false).expect("bind");
    let port = local_addr(&first).expect("addr").2;
    let again = loopback(port);
    assert_eq!(
      bind_socket(&again, Some(16), false).err(),
      Some(libc::EADDRINUSE)
    );
  }
}
