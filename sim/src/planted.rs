//! The planted-bug check: every deliberately wrong core variant must be caught within a bounded
//! number of seeds. Reports how many seeds each one took.

use qmp_core::server::PlantedBug;

use crate::failure::Failure;
use crate::runner::run_seed;

/// Seeds the check may spend on one planted bug (the bound).
pub const MAX_SEEDS_PER_BUG: u64 = 2_000;

/// Every planted bug the core offers.
pub const ALL: [PlantedBug; 13] = [
    PlantedBug::QueueLimitOffByOne,
    PlantedBug::LastThrottledEventDropped,
    PlantedBug::NoResumeOnClose,
    PlantedBug::OobReplyHeldBehindInBand,
    PlantedBug::EventBeforeNegotiation,
    PlantedBug::EarlyBytesAfterSuspension,
    PlantedBug::IdNotEchoedOnError,
    PlantedBug::CommandDroppedWithoutId,
    PlantedBug::FdLeakedOnClose,
    PlantedBug::NamedFdsDieWithConnection,
    PlantedBug::RoundRobinBroken,
    PlantedBug::HmpGetsEvents,
    PlantedBug::HmpBareNewline,
];

/// How one planted bug fared.
#[derive(Clone, Debug)]
pub struct Caught {
    /// The bug.
    pub bug: PlantedBug,
    /// Seeds run until the first failure (including it), or `None` if none failed.
    pub seeds: Option<u64>,
    /// The first failure.
    pub failure: Option<(u64, Failure)>,
}

/// Runs seeds `first..first+max` with `bug` planted until one fails.
pub fn hunt(bug: PlantedBug, first: u64, max: u64) -> Caught {
    for k in 0..max {
        let seed = first.wrapping_add(k);
        if let Err(f) = run_seed(seed, Some(bug)) {
            return Caught {
                bug,
                seeds: Some(k + 1),
                failure: Some((seed, f)),
            };
        }
    }
    Caught {
        bug,
        seeds: None,
        failure: None,
    }
}
