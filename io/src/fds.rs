//! The table of real file descriptors behind the core's opaque [`FdId`]s.
//!
//! The shim owns every descriptor received with SCM_RIGHTS; the core only sees ids. An id is
//! handed to the core exactly once and comes back at most once as `Output::CloseFd`, at which
//! point the descriptor is taken out of the table and closed by the caller *after* releasing
//! the server lock (closing can block on some file types).

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};

use qmp_core::server::FdId;

/// Most descriptors the table holds at once; further descriptors are closed on arrival and not
/// passed to the core. Far above what QMP clients pass (one per command).
pub const MAX_TABLE_FDS: usize = 1024;

/// Descriptors held on behalf of the core.
#[derive(Debug, Default)]
pub struct FdTable {
    fds: BTreeMap<FdId, OwnedFd>,
    /// Descriptors closed because the core returned them (a probe for tests).
    closed: u64,
}

impl FdTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Take ownership of `fd` and name it by its host number, so that `add-fd` and
    /// `query-fdsets` report real descriptor numbers as QEMU does. The number cannot collide:
    /// while the table holds a descriptor the kernel cannot hand out its number again.
    /// Gives the fd back (for closing) when the table is full.
    pub fn insert(&mut self, fd: OwnedFd) -> Result<FdId, OwnedFd> {
        if self.fds.len() >= MAX_TABLE_FDS {
            return Err(fd);
        }
        let Ok(n) = u64::try_from(fd.as_raw_fd()) else {
            return Err(fd);
        };
        let id = FdId(n);
        if self.fds.contains_key(&id) {
            return Err(fd);
        }
        self.fds.insert(id, fd);
        Ok(id)
    }

    /// Forget `id` and hand its descriptor back for closing (outside the lock).
    pub fn take(&mut self, id: FdId) -> Option<OwnedFd> {
        let fd = self.fds.remove(&id);
        if fd.is_some() {
            self.closed += 1;
        }
        fd
    }

    /// Descriptors currently held.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// True when no descriptor is held.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Descriptors closed so far because the core returned them.
    pub fn closed_count(&self) -> u64 {
        self.closed
    }

    /// Every descriptor still held, for closing at shutdown.
    pub fn drain(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.fds).into_values().collect()
    }
}
