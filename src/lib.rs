//! egg-cluster-rs: the native core of an egg.js cluster master.
//!
//! The core knows nothing about JavaScript: it spawns Node children with a
//! Node-compatible IPC channel, speaks Node's json wire protocol with them,
//! routes egg envelopes between them and answers Node's cluster protocol.
//! Only `binding` imports napi.

pub mod error;
pub mod ipc;
pub mod listen;
pub mod metrics;
pub mod router;
pub mod supervisor;
pub mod sys;
pub mod watchdog;

mod binding;
