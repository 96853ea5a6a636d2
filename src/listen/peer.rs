//! What `listen` needs of the workers, as traits: a worker is a `Peer`, and
//! `LiveApps` tells which app workers live now. Whoever owns the table of
//! workers implements them; `listen` imports no worker type.

use std::os::fd::OwnedFd;
use std::sync::Arc;

/// What `listen` needs of a worker: who it is, whether it may listen, and a
/// way to send it a protocol line (with a descriptor). Sending never blocks
/// and is never dropped for lack of room.
pub trait Peer: Send + Sync + 'static {
  fn pid(&self) -> u32;
  /// The worker's id (egg's order of app workers).
  fn id(&self) -> u32;
  /// An app worker (only app workers may listen).
  fn is_app(&self) -> bool;
  /// Node's `worker.state === 'listening'`.
  fn is_listening(&self) -> bool;
  /// The next `seq` of the master's NODE_CLUSTER messages to this worker.
  fn next_seq(&self) -> u64;
  /// Queues one protocol line, with `fd` as its handle.
  fn send_protocol(&self, line: Vec<u8>, fd: Option<OwnedFd>);
}

/// Who may be handed a sticky connection now: the live app workers (what
/// the table of workers says at the moment a connection arrives).
pub trait LiveApps: Send + Sync + 'static {
  type Peer: Peer;
  fn live_apps(&self) -> Vec<Arc<Self::Peer>>;
}
