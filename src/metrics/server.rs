//! The `/metrics` endpoint: a small HTTP/1.x server on the core's runtime,
//! so it answers while the master's JavaScript is busy. One request per
//! connection (`Connection: close`); the head must arrive within
//! `READ_TIMEOUT` (a client sending a byte now and then gets 408); at most
//! `MAX_CONNECTIONS` are served at once and any beyond are closed at once.
//! What to answer is `request`'s; what to say is `exposition`'s.
//! Must never: panic or stop accepting because of what a client does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::exposition::{render, CONTENT_TYPE};
use super::request::{answer, Answer, MAX_HEAD};
use super::SnapshotSource;
use crate::sys;

/// How long a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a response may take to leave.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// What is read and thrown away after an error answer, so the client gets
/// the answer rather than a reset for the bytes it is still sending.
const DRAIN_BYTES: usize = 256 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);
const LISTEN_BACKLOG: i32 = 1024;

/// Binds the endpoint's socket (listening, non-blocking, close-on-exec).
/// Errors are the OS errno (`EADDRINUSE`, `EADDRNOTAVAIL`, …).
pub fn bind(host: &str, port: u16) -> Result<std::net::TcpListener, i32> {
  let addr = sys::ListenAddr::Tcp {
    address: Some(host.to_owned()),
    port,
    ipv6_only: false,
  };
  let fd = sys::bind_socket(&addr, Some(LISTEN_BACKLOG), false)?;
  Ok(std::net::TcpListener::from(fd))
}

/// Serves `listener` until the returned task is aborted (or the runtime
/// stops). Call from inside the core's runtime.
pub fn serve(
  listener: std::net::TcpListener,
  source: Arc<dyn SnapshotSource>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
  let listener = TcpListener::from_std(listener)?;
  let local = listener.local_addr()?;
  let task = tokio::spawn(accept_loop(listener, source));
  Ok((local, task))
}

async fn accept_loop(listener: TcpListener, source: Arc<dyn SnapshotSource>) {
  let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
  loop {
    match listener.accept().await {
      Ok((stream, _)) => match slots.clone().try_acquire_owned() {
        Ok(slot) => {
          let source = source.clone();
          tokio::spawn(async move {
            if let Err(e) = serve_one(stream, source.as_ref()).await {
              tracing::debug!("metrics: a connection ended with {e}");
            }
            drop(slot);
          });
        }
        // too many at once: closed at once
        Err(_) => drop(stream),
      },
      Err(e) => {
        // out of descriptors, or the like: wait a little rather than spin
        tracing::debug!("metrics: accept failed: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
      }
    }
  }
}

/// Reads one request head and answers it.
async fn serve_one(mut stream: TcpStream, source: &dyn SnapshotSource) -> std::io::Result<()> {
  let deadline = Instant::now() + READ_TIMEOUT;
  let mut head = Vec::with_capacity(512);
  let mut chunk = [0u8; 2048];
  let verdict = loop {
    if let Some(verdict) = answer(&head) {
      break verdict;
    }
    match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
      Err(_) => break Answer::Timeout,
      // the client left before its head was complete
      Ok(Ok(0)) => return Ok(()),
      Ok(Ok(n)) => {
        let room = (MAX_HEAD + 1).saturating_sub(head.len());
        head.extend_from_slice(&chunk[..n.min(room.max(1))]);
      }
      Ok(Err(e)) => return Err(e),
    }
  };
  let response = respond(verdict, source);
  match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&response)).await {
    Ok(result) => result?,
    Err(_) => return Ok(()),
  }
  let _ = stream.shutdown().await;
  if !matches!(verdict, Answer::Metrics { .. }) {
    drain(&mut stream).await;
  }
  Ok(())
}

/// Reads and discards what the client still sends, for a moment.
async fn drain(stream: &mut TcpStream) {
  let mut chunk = [0u8; 4096];
  let mut left = DRAIN_BYTES;
  let _ = tokio::time::timeout(DRAIN_TIME, async {
    while left > 0 {
      match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => break,
        Ok(n) => left = left.saturating_sub(n),
      }
    }
  })
  .await;
}

/// The whole response for a verdict.
fn respond(verdict: Answer, source: &dyn SnapshotSource) -> Vec<u8> {
  let (code, reason) = verdict.status();
  let (content_type, body, head_only) = match verdict {
    Answer::Metrics { head_only } => (CONTENT_TYPE, render(&source.snapshot()), head_only),
    _ => (
      "text/plain; charset=utf-8",
      format!("{code} {reason}\n"),
      false,
    ),
  };
  let allow = if verdict == Answer::MethodNotAllowed {
    "Allow: GET, HEAD\r\n"
  } else {
    ""
  };
  let mut response = format!(
    "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
    body.len()
  )
  .into_bytes();
  if !head_only {
    response.extend_from_slice(body.as_bytes());
  }
  response
}

#[cfg(test)]
mod tests {
  use super::super::Snapshot;
  use super::*;

  struct Fixed;
  impl SnapshotSource for Fixed {
    fn snapshot(&self) -> Snapshot {
      Snapshot::default()
    }
  }

  async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
  }

  #[tokio::test]
  async fn answers_get_head_and_refusals_over_a_real_socket() {
    let listener = bind("127.0.0.1", 0).unwrap();
    let (addr, task) = serve(listener, Arc::new(Fixed)).unwrap();
    let got = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert!(got.contains("egg_cluster_messages_in_total 0\n"));
    let head = exchange(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n").await;
    assert!(
      head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
      "{head}"
    );
    let post = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
    assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD\r\n"));
    let garbage = exchange(addr, b"\x16\x03\x01garbage\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    task.abort();
  }

  #[test]
  fn a_port_in_use_is_the_os_errno() {
    let first = bind("127.0.0.1", 0).unwrap();
    let port = first.local_addr().unwrap().port();
    assert_eq!(bind("127.0.0.1", port).err(), Some(libc::EADDRINUSE));
  }
}
