//! The words of Node's cluster protocol that `listen` reads and writes: a
//! worker's `queryServer` request (and the key Node files it under) and the
//! lines the master answers with. Pure functions over text: nothing here
//! makes a syscall, holds a lock or knows a worker.

use crate::ipc::message::{push_json_str, raw_as_str, RawObject};
use crate::sys::{ListenAddr, SockName};

/// Node's backlog when `server.listen()` names none.
pub(super) const DEFAULT_BACKLOG: i32 = 511;

/// The listen request of a worker, as Node sends it.
pub(super) struct Query {
  /// Node's key: `address:port:addressType:fd:index`.
  pub key: String,
  pub addr: ListenAddr,
  pub backlog: i32,
  /// A unix socket (`addressType: -1`).
  pub pipe: bool,
  /// The request's `seq`, as JSON text (our answer's `ack`).
  pub seq: String,
  /// The request's `data`, as JSON text (echoed back).
  pub data: String,
}

impl Query {
  /// Reads a `queryServer` object; the errno to answer with when it asks for
  /// something the master cannot do.
  pub fn parse(o: &RawObject<'_>) -> Result<Query, i32> {
    let text = |k: &str| o.get(k).map(|v| v.get().to_owned());
    let address = o
      .get("address")
      .and_then(raw_as_str)
      .map(|s| s.into_owned());
    let port_text = text("port").unwrap_or_else(|| "undefined".into());
    let address_type = o.get("addressType").map(|v| match raw_as_str(v) {
      Some(s) => s.into_owned(),
      None => v.get().to_owned(),
    });
    let address_type_text = address_type.clone().unwrap_or_else(|| "undefined".into());
    let fd_text = text("fd").unwrap_or_else(|| "undefined".into());
    let index_text = text("index").unwrap_or_else(|| "undefined".into());
    let key = format!(
      "{}:{}:{}:{}:{}",
      address.clone().unwrap_or_else(|| "null".into()),
      port_text,
      address_type_text,
      fd_text,
      index_text
    );
    let seq = text("seq").unwrap_or_else(|| "null".into());
    let data = text("data").unwrap_or_else(|| "null".into());
    let backlog = o
      .get("backlog")
      .and_then(|v| v.get().parse::<i32>().ok())
      .filter(|b| *b > 0)
      .unwrap_or(DEFAULT_BACKLOG);
    if fd_text != "undefined" && fd_text != "null" && fd_text != "-1" {
      // Listening on an inherited fd in a worker is not supported.
      return Err(libc::EBADF);
    }
    let (addr, pipe) = match address_type_text.as_str() {
      "-1" => (ListenAddr::Unix(address.clone().ok_or(libc::EINVAL)?), true),
      "4" | "6" => {
        let port = port_text.parse::<u16>().map_err(|_| libc::EINVAL)?;
        let flags = o
          .get("flags")
          .and_then(|v| v.get().parse::<u32>().ok())
          .unwrap_or(0);
        (
          ListenAddr::Tcp {
            address,
            port,
            ipv6_only: flags & 1 != 0,
          },
          false,
        )
      }
      _ => return Err(libc::ENOTSUP),
    };
    Ok(Query {
      key,
      addr,
      backlog,
      pipe,
      seq,
      data,
    })
  }
}

/// The `seq` of a request that could not be read as a `Query`, as JSON text.
pub(super) fn seq_text(o: &RawObject<'_>) -> String {
  o.get("seq")
    .map_or("null".to_owned(), |v| v.get().to_owned())
}

/// The answer that carries a listen socket (`none`, `reuseport`): sent with
/// the socket as a `net.Native` handle.
pub(super) fn handle_reply(q: &Query, seq: u64) -> Vec<u8> {
  let mut line = Vec::with_capacity(160);
  line.extend_from_slice(
    b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"cmd\":\"NODE_CLUSTER\",\"errno\":0,\"key\":",
  );
  push_json_str(&mut line, &q.key);
  line.extend_from_slice(
    format!(",\"ack\":{},\"data\":{},\"seq\":{seq}}}}}\n", q.seq, q.data).as_bytes(),
  );
  line
}

/// The answer of a round-robin listen: no socket, the bound address (none
/// for a unix socket).
pub(super) fn round_robin_reply(q: &Query, sockname: Option<SockName>, seq: u64) -> Vec<u8> {
  let mut line = Vec::with_capacity(160);
  line.extend_from_slice(b"{\"cmd\":\"NODE_CLUSTER\",\"errno\":null,\"key\":");
  push_json_str(&mut line, &q.key);
  line.extend_from_slice(format!(",\"ack\":{},\"data\":{}", q.seq, q.data).as_bytes());
  if let Some((address, family, port)) = sockname {
    line.extend_from_slice(b",\"sockname\":{\"address\":");
    push_json_str(&mut line, &address);
    line.extend_from_slice(format!(",\"family\":\"{family}\",\"port\":{port}}}").as_bytes());
  }
  line.extend_from_slice(format!(",\"seq\":{seq}}}\n").as_bytes());
  line
}

/// A failed listen: Node's negative errno, the request's `seq` and `data`
/// echoed as JSON text.
pub(super) fn error_reply(key: &str, ack: &str, data: &str, errno: i32, seq: u64) -> Vec<u8> {
  let mut line = Vec::with_capacity(96);
  line.extend_from_slice(
    format!("{{\"cmd\":\"NODE_CLUSTER\",\"errno\":{},\"key\":", -errno).as_bytes(),
  );
  push_json_str(&mut line, key);
  line.extend_from_slice(format!(",\"ack\":{ack},\"data\":{data},\"seq\":{seq}}}\n").as_bytes());
  line
}

/// A connection for a round-robin worker: sent with the connection as a
/// `net.Native` handle; the worker answers `{ack: seq, accepted}`.
pub(super) fn newconn(key: &str, seq: u64) -> Vec<u8> {
  let mut line = Vec::with_capacity(128);
  line.extend_from_slice(
    b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\",\"key\":",
  );
  push_json_str(&mut line, key);
  line.extend_from_slice(format!(",\"seq\":{seq}}}}}\n").as_bytes());
  line
}

/// A worker's answer to a `newconn`: the `seq` it acknowledges and whether
/// it took the connection. None when the object is no such answer.
pub(super) fn parse_ack(o: &RawObject<'_>) -> Option<(u64, bool)> {
  let ack = o.get("ack").and_then(|v| v.get().parse::<u64>().ok())?;
  let accepted = o.get("accepted").is_some_and(|v| v.get() == "true");
  Some((ack, accepted))
}

/// The unix socket path a listen binds (unlinked when its handle closes).
pub(super) fn unix_path(addr: &ListenAddr) -> Option<String> {
  match addr {
    ListenAddr::Unix(path) => Some(path.clone()),
    ListenAddr::Tcp { .. } => None,
  }
}
