//! `Listeners` driven through its entry points, as a worker channel's reader
//! drives it, with fake workers and real sockets: a round-robin handle on
//! 127.0.0.1, real client connections, and the exact lines (and
//! descriptors) each worker is sent.

use serde_json::json;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use super::fake_peer::FakePeer;
use super::{Listeners, Policy};
use crate::ipc::message::{parse_line, Incoming, RawObject};

/// Node's key for `listen(0, '127.0.0.1')` in every worker.
const KEY: &str = "127.0.0.1:0:4:undefined:0";

/// A NODE_CLUSTER object from a worker, read as the reader reads it.
fn object(text: &str) -> RawObject<'_> {
  match parse_line(text.as_bytes()) {
    Ok(Incoming::Internal { object, .. }) => object,
    _ => panic!("not a NODE_CLUSTER message: {text}"),
  }
}

fn query_server(seq: u64) -> String {
  format!(
    r#"{{"cmd":"NODE_CLUSTER","act":"queryServer","address":"127.0.0.1","port":0,"addressType":4,"index":0,"backlog":511,"data":null,"seq":{seq}}}"#
  )
}

fn ack(seq: u64, accepted: bool) -> String {
  format!(r#"{{"cmd":"NODE_CLUSTER","ack":{seq},"accepted":{accepted},"seq":99}}"#)
}

/// `w` asks to listen on KEY; checks the round-robin answer and returns the
/// port it names.
async fn listen(l: &Listeners<FakePeer>, w: &Arc<FakePeer>, seq: u64) -> u16 {
  let n = w.count() + 1;
  l.query_server(w, &object(&query_server(seq)));
  let (reply, fd) = w.nth(n).await;
  assert!(fd.is_none(), "a round-robin answer carries no socket");
  let port = reply["sockname"]["port"].as_u64().expect("a port") as u16;
  assert_ne!(port, 0);
  assert_eq!(
    reply,
    json!({
      "cmd": "NODE_CLUSTER", "errno": null, "key": KEY, "ack": seq, "data": null,
      "sockname": {"address": "127.0.0.1", "family": "IPv4", "port": port},
      "seq": reply["seq"],
    })
  );
  port
}

/// Waits for line `n` of `w` to be a `newconn` for KEY; returns its `seq`
/// and the peer address of the connection handed with it.
async fn newconn(w: &FakePeer, n: usize) -> (u64, SocketAddr) {
  let (line, fd) = w.nth(n).await;
  let seq = line["msg"]["seq"].as_u64().expect("a seq");
  assert_eq!(
    line,
    json!({
      "cmd": "NODE_HANDLE", "type": "net.Native",
      "msg": {"cmd": "NODE_CLUSTER", "act": "newconn", "key": KEY, "seq": seq},
    })
  );
  (seq, peer_of(fd.expect("a newconn carries the connection")))
}

fn peer_of(fd: OwnedFd) -> SocketAddr {
  TcpStream::from(fd).peer_addr().expect("a connected socket")
}

fn connect(port: u16) -> TcpStream {
  TcpStream::connect(("127.0.0.1", port)).expect("connect")
}

fn local(c: &TcpStream) -> SocketAddr {
  c.local_addr().expect("local address")
}

/// Waits until KEY's round-robin handle holds `n` connections not yet handed
/// to a worker (the accept task runs on this test's runtime).
async fn until_pending(l: &Listeners<FakePeer>, n: usize) {
  let wait = async {
    while l.pending(KEY) != Some(n) {
      tokio::time::sleep(Duration::from_millis(1)).await;
    }
  };
  if tokio::time::timeout(Duration::from_secs(5), wait)
    .await
    .is_err()
  {
    panic!(
      "{KEY} holds {:?} pending connections, not {n}",
      l.pending(KEY)
    );
  }
}

#[tokio::test]
async fn two_workers_take_connections_in_turn_with_one_in_flight_each_until_they_ack() {
  let l = Listeners::new(Policy::RoundRobin);
  let (a, b) = (FakePeer::app(101, 1), FakePeer::app(102, 2));
  let port = listen(&l, &a, 1).await;
  assert_eq!(listen(&l, &b, 1).await, port, "one handle for the key");
  let clients: Vec<TcpStream> = (0..4).map(|_| connect(port)).collect();

  let (a_seq, a_conn) = newconn(&a, 2).await;
  let (b_seq, b_conn) = newconn(&b, 2).await;
  assert_eq!(a_conn, local(&clients[0]));
  assert_eq!(b_conn, local(&clients[1]));
  // the other two wait: neither worker gets a second one before it acks
  until_pending(&l, 2).await;
  assert_eq!((a.count(), b.count()), (2, 2));

  l.ack(&a, &object(&ack(a_seq, true)));
  let (a_seq2, a_conn2) = newconn(&a, 3).await;
  assert_eq!(a_conn2, local(&clients[2]));
  assert!(a_seq2 > a_seq);
  assert_eq!((l.pending(KEY), b.count()), (Some(1), 2));

  l.ack(&b, &object(&ack(b_seq, true)));
  let (_, b_conn2) = newconn(&b, 3).await;
  assert_eq!(b_conn2, local(&clients[3]));
  assert_eq!((l.pending(KEY), a.count()), (Some(0), 3));
}

#[tokio::test]
async fn a_refused_connection_goes_to_the_other_worker() {
  let l = Listeners::new(Policy::RoundRobin);
  let (a, b) = (FakePeer::app(101, 1), FakePeer::app(102, 2));
  let port = listen(&l, &a, 1).await;
  listen(&l, &b, 1).await;
  let client = connect(port);
  let (seq, conn) = newconn(&a, 2).await;
  assert_eq!(conn, local(&client));

  l.ack(&a, &object(&ack(seq, false)));
  let (_, conn) = newconn(&b, 2).await;
  assert_eq!(conn, local(&client));
  assert_eq!((l.pending(KEY), a.count()), (Some(0), 2));
}

#[tokio::test]
async fn a_connection_in_flight_to_a_worker_that_leaves_goes_to_another_worker() {
  let l = Listeners::new(Policy::RoundRobin);
  let (a, b) = (FakePeer::app(101, 1), FakePeer::app(102, 2));
  let port = listen(&l, &a, 1).await;
  listen(&l, &b, 1).await;
  let client = connect(port);
  let (_, conn) = newconn(&a, 2).await;
  assert_eq!(conn, local(&client));

  l.remove_worker(&a);
  let (_, conn) = newconn(&b, 2).await;
  assert_eq!(conn, local(&client));
  assert_eq!(l.pending(KEY), Some(0));
}

#[tokio::test]
async fn when_the_last_worker_leaves_the_handle_closes_and_the_port_is_free_at_once() {
  let l = Listeners::new(Policy::RoundRobin);
  let a = FakePeer::app(101, 1);
  let port = listen(&l, &a, 1).await;
  let _client = connect(port);
  newconn(&a, 2).await;

  l.remove_worker(&a);
  assert_eq!(l.pending(KEY), None, "no handle is left under the key");
  TcpListener::bind(("127.0.0.1", port)).expect("the port is free again");
}

#[tokio::test]
async fn an_ack_with_a_wrong_seq_is_ignored() {
  let l = Listeners::new(Policy::RoundRobin);
  let (a, b) = (FakePeer::app(101, 1), FakePeer::app(102, 2));
  let port = listen(&l, &a, 1).await;
  listen(&l, &b, 1).await;
  let first = connect(port);
  let (seq, conn) = newconn(&a, 2).await;
  assert_eq!(conn, local(&first));

  // a's ack of a seq it was never sent, and b's ack of a's seq: a stays busy
  l.ack(&a, &object(&ack(seq + 1, true)));
  l.ack(&b, &object(&ack(seq, true)));
  let second = connect(port);
  let (_, conn) = newconn(&b, 2).await;
  assert_eq!(conn, local(&second));
  let third = connect(port);
  until_pending(&l, 1).await;
  assert_eq!((a.count(), b.count()), (2, 2));

  // the right ack frees a for the waiting one
  l.ack(&a, &object(&ack(seq, true)));
  let (_, conn) = newconn(&a, 3).await;
  assert_eq!(conn, local(&third));
}

#[tokio::test]
async fn the_agents_query_server_is_refused_with_einval() {
  let l = Listeners::new(Policy::RoundRobin);
  let agent = FakePeer::agent(100);
  l.query_server(&agent, &object(&query_server(7)));
  let (reply, fd) = agent.nth(1).await;
  assert!(fd.is_none());
  assert_eq!(
    reply,
    json!({"cmd": "NODE_CLUSTER", "errno": -libc::EINVAL, "key": KEY, "ack": 7, "data": null, "seq": 0})
  );
  assert_eq!(l.pending(KEY), None, "nothing was bound");
}

#[tokio::test]
async fn a_query_server_on_an_inherited_fd_is_refused_with_ebadf() {
  let l = Listeners::new(Policy::RoundRobin);
  let a = FakePeer::app(101, 1);
  let text = r#"{"cmd":"NODE_CLUSTER","act":"queryServer","address":null,"port":null,"addressType":4,"fd":3,"index":0,"data":{"x":1},"seq":5}"#;
  l.query_server(&a, &object(text));
  let (reply, fd) = a.nth(1).await;
  assert!(fd.is_none());
  assert_eq!(
    reply,
    json!({"cmd": "NODE_CLUSTER", "errno": -libc::EBADF, "key": "", "ack": 5, "data": null, "seq": 0})
  );
}

#[tokio::test]
async fn a_worker_that_closes_its_key_gets_no_more_connections_and_the_last_close_frees_the_port() {
  let l = Listeners::new(Policy::RoundRobin);
  let (a, b) = (FakePeer::app(101, 1), FakePeer::app(102, 2));
  let port = listen(&l, &a, 1).await;
  listen(&l, &b, 1).await;
  let close = format!(r#"{{"cmd":"NODE_CLUSTER","act":"close","key":"{KEY}","seq":2}}"#);

  l.close_key(&a, &object(&close));
  let first = connect(port);
  let (_, conn) = newconn(&b, 2).await;
  assert_eq!(conn, local(&first));
  let _second = connect(port);
  until_pending(&l, 1).await;
  assert_eq!(a.count(), 1, "only its queryServer answer");

  l.close_key(&b, &object(&close));
  assert_eq!(l.pending(KEY), None);
  TcpListener::bind(("127.0.0.1", port)).expect("the port is free again");
}

#[tokio::test]
async fn closing_another_key_leaves_a_worker_on_its_own() {
  let l = Listeners::new(Policy::RoundRobin);
  let a = FakePeer::app(101, 1);
  let port = listen(&l, &a, 1).await;
  l.close_key(
    &a,
    &object(r#"{"cmd":"NODE_CLUSTER","act":"close","key":"127.0.0.1:8080:4:undefined:0"}"#),
  );
  let client = connect(port);
  let (_, conn) = newconn(&a, 2).await;
  assert_eq!(conn, local(&client));
}
