//! Giving a burst's memory back to the system once the burst is over.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use crate::sys;

/// How often the trim task looks at the traffic.
const TRIM_TICK: Duration = Duration::from_secs(1);
/// A burst worth giving memory back after: this much read since the last trim...
const TRIM_AFTER_BYTES: u64 = 16 << 20;
/// ...and less than this in the last tick (the burst is over).
const TRIM_QUIET_BYTES: u64 = 1 << 20;

/// Gives the memory of a burst back to the system once it is over. Large
/// messages pass through buffers of their own size; when they are freed, the
/// allocator keeps the pages for reuse, so the master would stay at the size
/// of its largest burst for good.
pub(super) async fn trim_after_bursts(shared: Arc<Shared>) {
  let mut tick = tokio::time::interval(TRIM_TICK);
  tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
  let mut pending = 0u64;
  loop {
    tick.tick().await;
    if shared.closed.load(Ordering::Acquire) {
      return;
    }
    let recent = shared.read_bytes.swap(0, Ordering::Relaxed);
    pending = pending.saturating_add(recent);
    if pending >= TRIM_AFTER_BYTES && recent < TRIM_QUIET_BYTES {
      sys::release_free_memory();
      pending = 0;
    }
  }
}
