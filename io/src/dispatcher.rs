//! The dispatcher thread: runs in-band handlers one at a time, in the order the core hands them
//! out (round robin across monitors, spec §5.3), never under the server lock, and writes the
//! replies of each batch of them itself (under the lock, see `writer`).

use crate::registry::{HandlerCache, Registry};
use crate::shared::Shared;
use crate::sync::Arc;

/// The dispatcher's loop: take the next in-band call, run it unlocked, complete it and take the
/// next one in the same step; at the end of a batch, write its replies and wake the IO thread
/// for the rest (`Shared::complete_and_next`). Returns when the shim stops.
pub fn run(shared: Arc<Shared>, registry: Arc<Registry>) {
    let mut handlers = HandlerCache::default();
    let mut next = shared.next_in_band();
    while let Some(call) = next {
        tracing::debug!(monitor = call.monitor.0, command = %call.command, "in-band call");
        let result = registry.run_cached(&mut handlers, &shared, &call);
        next = shared.complete_and_next(&call, result);
    }
}
