//! Everything that talks to the operating system directly (Linux first; the
//! rest of the core goes through this module): the IPC socketpair, the
//! child's setup between fork and exec, fd passing with SCM_RIGHTS, the
//! process tree, signals and listen sockets.
//!
//! Must never: allocate or lock between fork and exec (`child_setup` only
//! makes raw async-signal-safe syscalls), or leave a descriptor inheritable
//! except the one end handed to a child on purpose.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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
  let mut fds = [0 as libc::c_int; 2];
  // SAFETY: fds is a valid two-element array for pipe2 to fill.
  if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
    return Err(io::Error::last_os_error());
  }
  // SAFETY: pipe2 succeeded, both fds are open and owned by nobody else.
  Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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
    let mut pfd = libc::pollfd {
      fd: fd.as_raw_fd(),
      events: libc::POLLIN,
      revents: 0,
    };
    let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
    if ready < 0 {
      let err = io::Error::last_os_error();
      if err.kind() == io::ErrorKind::Interrupted {
        continue;
      }
      return Err(err);
    }
    if ready == 0 {
      continue;
    }
    let room = buf.len().min(max.saturating_sub(out.len()));
    if room == 0 {
      return Ok(Some(out));
    }
    // SAFETY: reading into a live stack buffer of at least `room` bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), room) };
    if n < 0 {
      let err = io::Error::last_os_error();
      if matches!(
        err.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
      ) {
        continue;
      }
      return Err(err);
    }
    if n == 0 {
      return Ok(Some(out));
    }
    out.extend_from_slice(&buf[..n as usize]);
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
  local_addr(fd.as_raw_fd())
    .map(|(_, _, port)| port)
    .ok_or_else(|| io::Error::other("a bound socket without a local address"))
}

/// A connected `AF_UNIX, SOCK_STREAM` pair, both ends close-on-exec; the
/// master's end is non-blocking.
pub fn ipc_socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
  let mut fds = [0 as libc::c_int; 2];
  // SAFETY: fds is a valid two-element array for socketpair to fill.
  let rc = unsafe {
    libc::socketpair(
      libc::AF_UNIX,
      libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
      0,
      fds.as_mut_ptr(),
    )
  };
  if rc != 0 {
    return Err(io::Error::last_os_error());
  }
  // SAFETY: socketpair succeeded, both fds are open and owned by nobody else.
  let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
  set_nonblocking(ours.as_raw_fd())?;
  Ok((ours, theirs))
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
  // SAFETY: plain fcntl on an fd we own.
  unsafe {
    let flags = libc::fcntl(fd, libc::F_GETFL);
    if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
      return Err(io::Error::last_os_error());
    }
  }
  Ok(())
}

/// Runs in the child between fork and exec: async-signal-safe calls only.
/// Moves the channel to fd 3 and `startup_fd` (when >= 0) to fd 4, both
/// inheritable, keeps stdio inherited, asks for `death_signal` when the
/// forking thread dies, closes the race where the master died first, and
/// resets signal dispositions as libuv does for its children.
///
/// # Safety
/// Only call from a `pre_exec` hook.
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

/// Room for the fds one `recvmsg` may carry (Node sends one per message; a
/// hostile worker may send more, which we take and close).
const MAX_FDS_PER_READ: usize = 16;

/// `recvmsg` into `buf`; received descriptors (close-on-exec) are pushed onto
/// `fds`. Returns the byte count (0 at EOF).
pub fn recv_with_fds(fd: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
  const SPACE: usize = MAX_FDS_PER_READ * std::mem::size_of::<libc::c_int>();
  // cmsg buffer, aligned for cmsghdr.
  let mut control = [0u64; (SPACE + 64) / 8];
  let mut iov = libc::iovec {
    iov_base: buf.as_mut_ptr().cast(),
    iov_len: buf.len(),
  };
  // SAFETY: msghdr is plain data; zeroed is a valid empty header.
  let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
  msg.msg_iov = &mut iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.as_mut_ptr().cast();
  msg.msg_controllen = std::mem::size_of_val(&control) as _;
  // SAFETY: msg points at live buffers for the duration of the call.
  let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
  if n < 0 {
    return Err(io::Error::last_os_error());
  }
  // SAFETY: walking the control buffer the kernel just filled, with its macros.
  unsafe {
    let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
    while !cmsg.is_null() {
      if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
        let data = libc::CMSG_DATA(cmsg) as *const libc::c_int;
        let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
        for i in 0..len / std::mem::size_of::<libc::c_int>() {
          let raw = std::ptr::read_unaligned(data.add(i));
          if raw >= 0 {
            fds.push(OwnedFd::from_raw_fd(raw));
          }
        }
      }
      cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
    }
  }
  Ok(n as usize)
}

/// `sendmsg` of `data`, with `fd` attached as SCM_RIGHTS when given.
pub fn send_with_fd(sock: RawFd, data: &[u8], fd: Option<RawFd>) -> io::Result<usize> {
  let mut iov = libc::iovec {
    iov_base: data.as_ptr() as *mut libc::c_void,
    iov_len: data.len(),
  };
  let mut control = [0u64; 8];
  // SAFETY: msghdr is plain data; zeroed is a valid empty header.
  let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
  msg.msg_iov = &mut iov;
  msg.msg_iovlen = 1;
  if let Some(fd) = fd {
    // SAFETY: the control buffer has room for one cmsghdr with one int.
    unsafe {
      msg.msg_control = control.as_mut_ptr().cast();
      msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as _;
      let cmsg = libc::CMSG_FIRSTHDR(&msg);
      (*cmsg).cmsg_level = libc::SOL_SOCKET;
      (*cmsg).cmsg_type = libc::SCM_RIGHTS;
      (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
      std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut libc::c_int, fd);
    }
  }
  // SAFETY: msg points at live buffers for the duration of the call.
  let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
  if n < 0 {
    return Err(io::Error::last_os_error());
  }
  Ok(n as usize)
}

/// `writev` of several buffers (no fds), MSG_NOSIGNAL semantics via sendmsg.
pub fn send_vectored(sock: RawFd, bufs: &[&[u8]]) -> io::Result<usize> {
  let iovs: Vec<libc::iovec> = bufs
    .iter()
    .map(|b| libc::iovec {
      iov_base: b.as_ptr() as *mut libc::c_void,
      iov_len: b.len(),
    })
    .collect();
  // SAFETY: msghdr is plain data; zeroed is a valid empty header.
  let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
  msg.msg_iov = iovs.as_ptr() as *mut libc::iovec;
  msg.msg_iovlen = iovs.len() as _;
  // SAFETY: msg points at live buffers for the duration of the call.
  let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
  if n < 0 {
    return Err(io::Error::last_os_error());
  }
  Ok(n as usize)
}

/// Shuts down the writing side of a socket (the peer reads EOF).
pub fn shutdown_write(sock: RawFd) {
  // SAFETY: shutdown on an fd we own; errors (already closed) are irrelevant.
  unsafe {
    libc::shutdown(sock, libc::SHUT_WR);
  }
}

/// Stops a listening socket from listening now, even while other owners of
/// the descriptor keep it open: its port can be bound again at once.
pub fn shutdown_listener(sock: RawFd) {
  // SAFETY: shutdown on a socket fd we own; errors (not connected) are irrelevant.
  unsafe {
    libc::shutdown(sock, libc::SHUT_RDWR);
  }
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
  // SAFETY: kill(2) with a positive pid.
  unsafe { libc::kill(pid, signal) == 0 }
}

/// Whether a process exists (and is not a zombie we could still signal).
pub fn alive(pid: u32) -> bool {
  kill(pid, 0)
}

pub fn getpid() -> u32 {
  std::process::id()
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
pub fn local_addr(fd: RawFd) -> Option<SockName> {
  // SAFETY: borrowing the fd for a getsockname; ManuallyDrop keeps it open.
  let socket = std::mem::ManuallyDrop::new(unsafe { socket2::Socket::from_raw_fd(fd) });
  let addr = socket.local_addr().ok()?;
  let sa = addr.as_socket()?;
  let family = if sa.is_ipv6() { "IPv6" } else { "IPv4" };
  Some((sa.ip().to_string(), family, sa.port()))
}

/// Accepts one connection, non-blocking and close-on-exec (a worker's libuv
/// takes a received socket as it is: a blocking one would stall its loop);
/// WouldBlock when none is waiting.
pub fn accept(listener: RawFd) -> io::Result<OwnedFd> {
  // SAFETY: accept4 with null address pointers is allowed.
  let fd = unsafe {
    libc::accept4(
      listener,
      std::ptr::null_mut(),
      std::ptr::null_mut(),
      libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
    )
  };
  if fd < 0 {
    return Err(io::Error::last_os_error());
  }
  // SAFETY: accept4 returned a new fd that we own.
  Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Accepts one connection and tells who the peer is.
pub fn accept_with_peer(listener: RawFd) -> io::Result<(OwnedFd, Option<std::net::SocketAddr>)> {
  let conn = accept(listener)?;
  // SAFETY: borrowing the fd for a getpeername; ManuallyDrop keeps it open.
  let socket =
    std::mem::ManuallyDrop::new(unsafe { socket2::Socket::from_raw_fd(conn.as_raw_fd()) });
  let peer = socket.peer_addr().ok().and_then(|a| a.as_socket());
  Ok((conn, peer))
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
    // SAFETY: writing a live buffer to an fd we own.
    let n = unsafe { libc::write(write_end.as_raw_fd(), b"{\"ok\":1}".as_ptr().cast(), 8) };
    assert_eq!(n, 8);
    drop(write_end);
    let answer = read_to_eof(&read_end, 16, short).expect("read");
    assert_eq!(answer.as_deref(), Some(&b"{\"ok\":1}"[..]));
    // an answer over the cap is cut at the cap
    let (r2, w2) = startup_pipe().expect("a pipe");
    // SAFETY: as above.
    unsafe { libc::write(w2.as_raw_fd(), b"0123456789".as_ptr().cast(), 10) };
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
      // SAFETY: F_GETFL on an fd we own.
      let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
      flags & libc::O_NONBLOCK != 0
    };
    assert!(is_nonblocking(listener.as_raw_fd()));
    let port = local_addr(listener.as_raw_fd()).expect("addr").2;
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut conn = None;
    for _ in 0..100 {
      match accept(listener.as_raw_fd()) {
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
    let port = local_addr(first.as_raw_fd()).expect("addr").2;
    let again = loopback(port);
    assert_eq!(
      bind_socket(&again, Some(16), false).err(),
      Some(libc::EADDRINUSE)
    );
  }
}
