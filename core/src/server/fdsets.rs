//! Fd sets (`add-fd`, `remove-fd`, `query-fdsets`): global, shared by all monitors, with
//! QEMU 7.2's id allocation, ordering, texts and cleanup rule (spec §10.3).
//!
//! Descriptors are opaque ids; an fd's number on the wire is its id. The core never dups fds,
//! so a set never has "dup'ed users".

use super::types::FdId;
use crate::json::{Object, Value};

#[derive(Debug)]
struct SetFd {
    fd: FdId,
    removed: bool,
    opaque: Option<crate::json::JsonString>,
}

#[derive(Debug)]
struct FdSet {
    id: i64,
    /// Newest first (QEMU inserts at the head).
    fds: Vec<SetFd>,
}

/// All fd sets, sorted by id.
#[derive(Debug, Default)]
pub(crate) struct FdSets {
    sets: Vec<FdSet>,
}

/// An fd number as QEMU prints it.
pub(crate) fn fd_value(fd: FdId) -> Value {
    match i64::try_from(fd.0) {
        Ok(i) => Value::Int(i),
        Err(_) => Value::UInt(fd.0),
    }
}

impl FdSets {
    /// `add-fd` after the fd was claimed. On error the fd is handed back to be closed.
    pub(crate) fn add(
        &mut self,
        fd: FdId,
        fdset_id: Option<i64>,
        opaque: Option<crate::json::JsonString>,
    ) -> Result<Value, (FdId, &'static str)> {
        let id = match fdset_id {
            Some(id) if id < 0 => {
                return Err((fd, "Parameter 'fdset-id' expects a non-negative value"));
            }
            Some(id) => id,
            None => {
                // The lowest unused id >= 0: the first gap in the sorted list.
                let mut prev = -1i64;
                for s in &self.sets {
                    if s.id == prev + 1 {
                        prev = s.id;
                    } else {
                        break;
                    }
                }
                prev + 1
            }
        };
        let pos = match self.sets.binary_search_by_key(&id, |s| s.id) {
            Ok(p) => p,
            Err(p) => {
                self.sets.insert(
                    p,
                    FdSet {
                        id,
                        fds: Vec::new(),
                    },
                );
                p
            }
        };
        self.sets[pos].fds.insert(
            0,
            SetFd {
                fd,
                removed: false,
                opaque,
            },
        );
        let mut info = Object::with_capacity(2);
        info.insert("fd", fd_value(fd));
        info.insert("fdset-id", Value::Int(id));
        Ok(Value::Object(info))
    }

    /// `remove-fd`: mark, then clean the set up. Returns the error text on failure.
    pub(crate) fn remove(
        &mut self,
        fdset_id: i64,
        fd: Option<i64>,
        cleanup: Cleanup,
        closed: &mut Vec<FdId>,
    ) -> Result<(), String> {
        let not_found = || match fd {
            Some(fd) => format!("File descriptor named 'fdset-id:{fdset_id}, fd:{fd}' not found"),
            None => format!("File descriptor named 'fdset-id:{fdset_id}' not found"),
        };
        let Some(pos) = self.sets.iter().position(|s| s.id == fdset_id) else {
            return Err(not_found());
        };
        let set = &mut self.sets[pos];
        match fd {
            Some(n) => match set.fds.iter_mut().find(|f| i64::try_from(f.fd.0) == Ok(n)) {
                Some(f) => f.removed = true,
                None => return Err(not_found()),
            },
            None => set.fds.iter_mut().for_each(|f| f.removed = true),
        }
        self.cleanup_set(pos, cleanup, closed);
        Ok(())
    }

    /// Clean every set up (QEMU does this at each monitor disconnect).
    pub(crate) fn cleanup_all(&mut self, cleanup: Cleanup, closed: &mut Vec<FdId>) {
        let mut i = 0;
        while i < self.sets.len() {
            let before = self.sets.len();
            self.cleanup_set(i, cleanup, closed);
            if self.sets.len() == before {
                i += 1;
            }
        }
    }

    fn cleanup_set(&mut self, pos: usize, c: Cleanup, closed: &mut Vec<FdId>) {
        let set = &mut self.sets[pos];
        set.fds.retain(|f| {
            let close = (f.removed || c.open_monitors == 0) && c.running;
            if close {
                closed.push(f.fd);
            }
            !close
        });
        if set.fds.is_empty() {
            self.sets.remove(pos);
        }
    }

    /// `query-fdsets`: sets in descending id order, fds oldest first.
    pub(crate) fn query(&self) -> Value {
        let list = self
            .sets
            .iter()
            .rev()
            .map(|s| {
                let fds = s
                    .fds
                    .iter()
                    .rev()
                    .map(|f| {
                        let mut o = Object::with_capacity(2);
                        o.insert("fd", fd_value(f.fd));
                        if let Some(op) = &f.opaque {
                            o.insert("opaque", Value::String(op.clone()));
                        }
                        Value::Object(o)
                    })
                    .collect();
                let mut o = Object::with_capacity(2);
                o.insert("fds", Value::Array(fds));
                o.insert("fdset-id", Value::Int(s.id));
                Value::Object(o)
            })
            .collect();
        Value::Array(list)
    }

    /// Every descriptor held (for shutdown and accounting).
    pub(crate) fn all_fds(&self) -> impl Iterator<Item = FdId> + '_ {
        self.sets.iter().flat_map(|s| s.fds.iter().map(|f| f.fd))
    }

    pub(crate) fn clear(&mut self) -> Vec<FdId> {
        let fds = self.all_fds().collect();
        self.sets.clear();
        fds
    }

    pub(crate) fn memory_estimate(&self) -> usize {
        self.sets
            .iter()
            .map(|s| std::mem::size_of::<FdSet>() + s.fds.capacity() * std::mem::size_of::<SetFd>())
            .sum()
    }
}

/// The conditions QEMU's `monitor_fdset_cleanup` looks at.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Cleanup {
    /// `mon_refcount`: open monitor connections.
    pub(crate) open_monitors: usize,
    /// `runstate_is_running()`.
    pub(crate) running: bool,
}
