//! Who a message goes to, over the table: egg's routing decision for an
//! envelope (the rules themselves are `crate::router`'s), the live workers
//! a destination names, and the narrow view of live app workers sticky
//! sessions get. A worker that leaves is forgotten here.

use std::sync::Arc;

use super::{Shared, Worker, WorkerKind};
use crate::ipc::message::{Envelope, ReceiverPid};
use crate::listen::LiveApps;
use crate::router::{self, Destination, Sender};

impl Shared {
  pub(super) async fn forget(self: &Arc<Self>, w: &Arc<Worker>) {
    if let Ok(mut t) = self.table.write() {
      t.workers.retain(|x| !Arc::ptr_eq(x, w));
    }
    self.listeners.remove_worker(w);
  }

  pub(super) fn live_workers(&self, kind: WorkerKind) -> Vec<Arc<Worker>> {
    self
      .table
      .read()
      .map(|t| {
        t.workers
          .iter()
          .filter(|w| w.kind == kind && w.live())
          .cloned()
          .collect()
      })
      .unwrap_or_default()
  }

  /// egg's routing decision for an envelope sent by `from`.
  pub(super) fn route_of(&self, from: Sender, env: &Envelope<'_>) -> router::Route<'static> {
    let receiver = env.receiver(self.config.receiver_worker_id_first);
    // the agent's pid only matters when a receiverPid names someone
    let agent_pid = match receiver {
      Some(ReceiverPid::Pid(_)) => self
        .table
        .read()
        .ok()
        .and_then(|t| t.agent().map(|a| a.pid)),
      _ => None,
    };
    let to = env.to();
    let route = router::route(from, to.as_deref(), receiver, self.master_pid, agent_pid);
    // Only egg's names are ever written into a delivered envelope.
    router::Route {
      to: route.egg_to(),
      destination: route.destination,
    }
  }

  /// The live workers a destination names now.
  pub(super) fn targets(&self, destination: Destination) -> Vec<Arc<Worker>> {
    match destination {
      Destination::Agent => self
        .live_workers(WorkerKind::Agent)
        .pop()
        .into_iter()
        .collect(),
      Destination::Apps => self.live_workers(WorkerKind::App),
      Destination::AppPid(pid) => self
        .live_workers(WorkerKind::App)
        .into_iter()
        .filter(|t| t.pid == pid)
        .collect(),
      Destination::Master | Destination::Parent | Destination::Nowhere => Vec::new(),
    }
  }
}

/// Sticky sessions hand connections to the live app workers of the table.
impl LiveApps for Shared {
  type Peer = Worker;

  fn live_apps(&self) -> Vec<Arc<Worker>> {
    self.live_workers(WorkerKind::App)
  }
}
