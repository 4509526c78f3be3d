//! The table of descriptors behind the core's opaque [`FdId`]s, generic over the descriptor
//! type (`OwnedFd` on a real system, a simulated descriptor in the simulator).
//!
//! Invariants: every descriptor handed to [`FdTable::insert`] is, exactly once, either kept
//! (and later handed back by [`FdTable::take`] or [`FdTable::drain`]) or handed straight back
//! as refused; the table never drops a descriptor itself, so the caller closes each one outside
//! any lock. Each held descriptor is charged to the monitor that passed it; one monitor may hold
//! at most [`FdLimits::per_monitor`] of them, so one client cannot take every slot.

use std::collections::BTreeMap;

use qmp_core::server::{FdId, MonitorId};

/// A descriptor the driver can hold: it only needs the number the host gave it, so that
/// `add-fd` and `query-fdsets` report real numbers as QEMU does.
pub trait Descriptor {
    /// The host's number for it (unique among the descriptors open at once).
    fn number(&self) -> u64;
}

impl Descriptor for std::os::fd::OwnedFd {
    fn number(&self) -> u64 {
        use std::os::fd::AsRawFd;
        // A valid descriptor is never negative.
        u64::try_from(self.as_raw_fd()).unwrap_or(u64::MAX)
    }
}

/// Most descriptors the table holds at once (all clients together). Far above what QMP clients
/// pass (one per command).
pub const MAX_TABLE_FDS: usize = 1024;

/// Most descriptors one monitor may have in the table at once: a quarter of it, so that at
/// least four clients can always pass descriptors whatever the others hold.
pub const MAX_FDS_PER_MONITOR: usize = MAX_TABLE_FDS / 4;

/// The table's bounds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FdLimits {
    /// Descriptors held at once, every monitor together. Default [`MAX_TABLE_FDS`].
    pub total: usize,
    /// Descriptors one monitor may have in the table. Default [`MAX_FDS_PER_MONITOR`].
    pub per_monitor: usize,
}

impl Default for FdLimits {
    fn default() -> Self {
        FdLimits {
            total: MAX_TABLE_FDS,
            per_monitor: MAX_FDS_PER_MONITOR,
        }
    }
}

/// Why a descriptor was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The table holds [`FdLimits::total`] descriptors.
    TableFull,
    /// The monitor holds its share, [`FdLimits::per_monitor`].
    ShareUsed,
    /// Its number is already in the table (a caller bug: the host never reuses an open number).
    Duplicate,
}

impl Refusal {
    /// The text logged for it.
    pub fn text(self) -> &'static str {
        match self {
            Refusal::TableFull => "the descriptor table is full",
            Refusal::ShareUsed => "the client holds its share of the descriptor table",
            Refusal::Duplicate => "a descriptor with that number is already held",
        }
    }
}

/// Descriptors held on behalf of the core.
#[derive(Debug)]
pub struct FdTable<F> {
    limits: FdLimits,
    fds: BTreeMap<FdId, (F, MonitorId)>,
    per_monitor: BTreeMap<MonitorId, usize>,
    /// Descriptors handed back because the core returned them.
    closed: u64,
}

impl<F: Descriptor> FdTable<F> {
    /// An empty table bounded by `limits`.
    pub fn new(limits: FdLimits) -> Self {
        FdTable {
            limits,
            fds: BTreeMap::new(),
            per_monitor: BTreeMap::new(),
            closed: 0,
        }
    }

    /// Keep `fd`, passed by `monitor`, and name it by its host number. Gives it back (for
    /// closing) with the reason when it cannot be kept.
    pub fn insert(&mut self, monitor: MonitorId, fd: F) -> Result<FdId, (F, Refusal)> {
        if self.fds.len() >= self.limits.total {
            return Err((fd, Refusal::TableFull));
        }
        let held = self.per_monitor.get(&monitor).copied().unwrap_or(0);
        if held >= self.limits.per_monitor {
            return Err((fd, Refusal::ShareUsed));
        }
        let id = FdId(fd.number());
        if self.fds.contains_key(&id) {
            return Err((fd, Refusal::Duplicate));
        }
        self.fds.insert(id, (fd, monitor));
        *self.per_monitor.entry(monitor).or_insert(0) += 1;
        Ok(id)
    }

    /// Forget `id` and hand its descriptor back for closing (outside any lock).
    pub fn take(&mut self, id: FdId) -> Option<F> {
        let fd = self.hand_over(id)?;
        self.closed += 1;
        Some(fd)
    }

    /// Forget `id` and hand its descriptor to a handler that took it by name (not counted as
    /// closed: the handler owns it now).
    pub fn hand_over(&mut self, id: FdId) -> Option<F> {
        let (fd, monitor) = self.fds.remove(&id)?;
        if let Some(n) = self.per_monitor.get_mut(&monitor) {
            *n -= 1;
            if *n == 0 {
                self.per_monitor.remove(&monitor);
            }
        }
        Some(fd)
    }

    /// Descriptors currently held.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// True when no descriptor is held.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Descriptors `monitor` has in the table.
    pub fn held_by(&self, monitor: MonitorId) -> usize {
        self.per_monitor.get(&monitor).copied().unwrap_or(0)
    }

    /// Descriptors handed back so far because the core returned them.
    pub fn closed_count(&self) -> u64 {
        self.closed
    }

    /// The bounds.
    pub fn limits(&self) -> FdLimits {
        self.limits
    }

    /// Every descriptor still held, for closing at shutdown.
    pub fn drain(&mut self) -> Vec<F> {
        self.per_monitor.clear();
        std::mem::take(&mut self.fds)
            .into_values()
            .map(|(fd, _)| fd)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Fake(u64);

    impl Descriptor for Fake {
        fn number(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn one_monitor_cannot_take_every_slot() {
        let mut t = FdTable::new(FdLimits {
            total: 4,
            per_monitor: 2,
        });
        let (a, b) = (MonitorId(0), MonitorId(1));
        assert_eq!(t.insert(a, Fake(10)), Ok(FdId(10)));
        assert_eq!(t.insert(a, Fake(11)), Ok(FdId(11)));
        assert_eq!(t.insert(a, Fake(12)), Err((Fake(12), Refusal::ShareUsed)));
        assert_eq!(t.insert(b, Fake(13)), Ok(FdId(13)));
        assert_eq!(t.insert(b, Fake(11)), Err((Fake(11), Refusal::Duplicate)));
        assert_eq!(t.insert(b, Fake(14)), Ok(FdId(14)));
        assert_eq!(
            t.insert(MonitorId(2), Fake(15)),
            Err((Fake(15), Refusal::TableFull))
        );
        assert_eq!(t.take(FdId(10)), Some(Fake(10)));
        assert_eq!(t.held_by(a), 1);
        assert_eq!(t.insert(a, Fake(16)), Ok(FdId(16)));
        assert_eq!(t.take(FdId(10)), None, "handed back once only");
        assert_eq!(t.closed_count(), 1);
        let mut rest: Vec<u64> = t.drain().into_iter().map(|f| f.0).collect();
        rest.sort_unstable();
        assert_eq!(rest, [11, 13, 14, 16]);
        assert_eq!(t.held_by(a), 0);
    }
}
