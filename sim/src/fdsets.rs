//! The reference model of QEMU 7.2's fd sets (`add-fd`, `remove-fd`, `query-fdsets`; spec
//! §10.3), written from QEMU's `monitor/misc.c` and checked against a live QEMU 7.2, not from
//! the core.
//!
//! Fd sets are global, shared by every monitor, so a reply depends on what every client did
//! before the request ran, not when it was sent. A client therefore plans an fd-set request
//! without its reply ([`FdSetCall`]); the connection's model works the reply out when the
//! reply is checked, which the world does in the input that ran the request (in-band replies
//! are checked as soon as they are produced). [`FdSets::execute`] is then applied to the
//! model's sets, and the descriptors it closes are due as `CloseFd` in that same input.
//!
//! Cleanup (`monitor_fdset_cleanup`, at `remove-fd` and at every monitor close): an fd is
//! closed when it was removed, or no monitor connection is open (`mon_refcount == 0`), and
//! only while the VM runs; a set left empty goes. While paused a removed fd stays listed by
//! `query-fdsets` and can be removed again.
//!
//! Invariant: [`FdSets::expected_closes`] is empty between inputs (the world settles it after
//! every input with the descriptors the core closed, [`FdSets::settle_closes`]).

use crate::model::{err_reply, ok_reply};
use crate::wire::J;

/// One fd-set request as planned: its arguments, id and the monitor's pretty setting.
#[derive(Clone, Debug, PartialEq)]
pub struct FdSetCall {
    /// What it asks.
    pub op: FdSetOp,
    /// The request's id, echoed in the reply.
    pub id: Option<J>,
    /// The monitor pretty-prints.
    pub pretty: bool,
}

/// The fd-set requests the clients send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FdSetOp {
    /// `add-fd`: `fd` is the descriptor passed with the request (the world fills it in when it
    /// assigns the number; `None`: sent without one).
    Add {
        /// The passed descriptor.
        fd: Option<u64>,
        /// `fdset-id`, if given.
        set: Option<i64>,
        /// `opaque`, if given.
        opaque: Option<String>,
    },
    /// `remove-fd`.
    Remove {
        /// `fdset-id`.
        set: i64,
        /// `fd`, if given.
        fd: Option<i64>,
    },
    /// `query-fdsets`.
    Query,
}

impl FdSetOp {
    /// The command name.
    pub fn command(&self) -> &'static str {
        match self {
            FdSetOp::Add { .. } => "add-fd",
            FdSetOp::Remove { .. } => "remove-fd",
            FdSetOp::Query => "query-fdsets",
        }
    }

    /// The request's `arguments`, if any.
    pub fn arguments(&self) -> Option<J> {
        let mut a = Vec::new();
        match self {
            FdSetOp::Add { set, opaque, .. } => {
                if let Some(s) = set {
                    a.push(("fdset-id", J::Int(*s)));
                }
                if let Some(o) = opaque {
                    a.push(("opaque", J::s(o)));
                }
            }
            FdSetOp::Remove { set, fd } => {
                a.push(("fdset-id", J::Int(*set)));
                if let Some(fd) = fd {
                    a.push(("fd", J::Int(*fd)));
                }
            }
            FdSetOp::Query => return None,
        }
        (!a.is_empty()).then(|| J::obj(a))
    }
}

#[derive(Clone, Debug)]
struct SetFd {
    fd: u64,
    removed: bool,
    opaque: Option<String>,
}

#[derive(Clone, Debug)]
struct Set {
    id: i64,
    /// Oldest first (QEMU keeps them newest first and `query-fdsets` reverses).
    fds: Vec<SetFd>,
}

/// The model's fd sets, the VM run state they depend on, and the closes due in this input.
/// Bounded by the world's requests: each `add-fd` adds at most one descriptor, and a world
/// sends at most `Options::requests` requests.
#[derive(Clone, Debug)]
pub struct FdSets {
    /// Ascending id.
    sets: Vec<Set>,
    /// `runstate_is_running()`.
    pub running: bool,
    /// Descriptors the core must close (as `CloseFd`) in the current input.
    pub expected_closes: Vec<u64>,
}

impl Default for FdSets {
    fn default() -> Self {
        FdSets {
            sets: Vec::new(),
            running: true,
            expected_closes: Vec::new(),
        }
    }
}

impl FdSets {
    /// No set exists.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// A set holds `fd`.
    pub fn holds(&self, fd: u64) -> bool {
        self.sets.iter().any(|s| s.fds.iter().any(|f| f.fd == fd))
    }

    /// Runs `call` on these sets with `open` monitor connections open; returns the exact reply
    /// bytes. Descriptors it closes are added to [`FdSets::expected_closes`].
    pub fn execute(&mut self, call: &FdSetCall, open: usize) -> Vec<u8> {
        let id = call.id.as_ref();
        let pretty = call.pretty;
        let err = |desc: &str| err_reply("GenericError", desc, id, pretty);
        match &call.op {
            FdSetOp::Add { fd, set, opaque } => {
                let Some(fd) = *fd else {
                    return err("No file descriptor supplied via SCM_RIGHTS");
                };
                let sid = match *set {
                    // The fd is claimed, then closed.
                    Some(s) if s < 0 => {
                        self.expected_closes.push(fd);
                        return err("Parameter 'fdset-id' expects a non-negative value");
                    }
                    Some(s) => s,
                    // The lowest id not in use.
                    None => {
                        let mut next = 0;
                        for s in &self.sets {
                            if s.id != next {
                                break;
                            }
                            next += 1;
                        }
                        next
                    }
                };
                let pos = match self.sets.binary_search_by_key(&sid, |s| s.id) {
                    Ok(p) => p,
                    Err(p) => {
                        self.sets.insert(
                            p,
                            Set {
                                id: sid,
                                fds: Vec::new(),
                            },
                        );
                        p
                    }
                };
                self.sets[pos].fds.push(SetFd {
                    fd,
                    removed: false,
                    opaque: opaque.clone(),
                });
                // AddfdInfo's members in QAPI order.
                ok_reply(
                    J::obj(vec![("fdset-id", J::Int(sid)), ("fd", fd_j(fd))]),
                    id,
                    pretty,
                )
            }
            FdSetOp::Remove { set, fd } => {
                let not_found = || {
                    err(&match fd {
                        Some(fd) => {
                            format!("File descriptor named 'fdset-id:{set}, fd:{fd}' not found")
                        }
                        None => format!("File descriptor named 'fdset-id:{set}' not found"),
                    })
                };
                let Some(pos) = self.sets.iter().position(|s| s.id == *set) else {
                    return not_found();
                };
                let s = &mut self.sets[pos];
                match fd {
                    Some(n) => match s.fds.iter_mut().find(|f| i64::try_from(f.fd) == Ok(*n)) {
                        Some(f) => f.removed = true,
                        None => return not_found(),
                    },
                    None => s.fds.iter_mut().for_each(|f| f.removed = true),
                }
                self.clean_set(pos, open);
                ok_reply(J::obj(vec![]), id, pretty)
            }
            FdSetOp::Query => {
                let list = self
                    .sets
                    .iter()
                    .rev()
                    .map(|s| {
                        let fds = s
                            .fds
                            .iter()
                            .map(|f| {
                                let mut m = vec![("fd", fd_j(f.fd))];
                                if let Some(o) = &f.opaque {
                                    m.push(("opaque", J::s(o)));
                                }
                                J::obj(m)
                            })
                            .collect();
                        // FdsetInfo's members in QAPI order.
                        J::obj(vec![("fdset-id", J::Int(s.id)), ("fds", J::Arr(fds))])
                    })
                    .collect();
                ok_reply(J::Arr(list), id, pretty)
            }
        }
    }

    /// A monitor connection closed, leaving `open` open: QEMU's `monitor_fdsets_cleanup`.
    pub fn cleanup(&mut self, open: usize) {
        let mut pos = 0;
        while pos < self.sets.len() {
            if !self.clean_set(pos, open) {
                pos += 1;
            }
        }
    }

    /// `monitor_fdset_cleanup` of one set; true when the set went.
    fn clean_set(&mut self, pos: usize, open: usize) -> bool {
        let running = self.running;
        let closes = &mut self.expected_closes;
        self.sets[pos].fds.retain(|f| {
            let close = (f.removed || open == 0) && running;
            if close {
                closes.push(f.fd);
            }
            !close
        });
        if self.sets[pos].fds.is_empty() {
            self.sets.remove(pos);
            return true;
        }
        false
    }

    /// The descriptors the core closed in this input: every close the model expects must be
    /// among them, and none of them may be an fd the model still has in a set.
    pub fn settle_closes(&mut self, closed: &[u64]) -> Result<(), String> {
        for fd in closed {
            if self.holds(*fd) {
                return Err(format!(
                    "fd {fd} was closed while the model still has it in an fd set"
                ));
            }
            self.expected_closes.retain(|x| x != fd);
        }
        if self.expected_closes.is_empty() {
            return Ok(());
        }
        let missed = std::mem::take(&mut self.expected_closes);
        Err(format!(
            "fd-set descriptors {missed:?} should have been closed by this input (running={})",
            self.running
        ))
    }
}

fn fd_j(fd: u64) -> J {
    J::Int(i64::try_from(fd).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(op: FdSetOp) -> FdSetCall {
        FdSetCall {
            op,
            id: None,
            pretty: false,
        }
    }

    fn add(fd: u64, set: Option<i64>, opaque: Option<&str>) -> FdSetCall {
        call(FdSetOp::Add {
            fd: Some(fd),
            set,
            opaque: opaque.map(str::to_string),
        })
    }

    fn text(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap_or_default()
    }

    /// The transcript taken from QEMU 7.2 (`-machine none`, running, one monitor open).
    #[test]
    fn replies_match_a_live_qemu_transcript() {
        let mut s = FdSets::default();
        let mut id1 = add(12, None, None);
        id1.id = Some(J::Int(1));
        assert_eq!(
            text(s.execute(&id1, 1)),
            "{\"return\": {\"fd\": 12, \"fdset-id\": 0}, \"id\": 1}\r\n"
        );
        assert_eq!(
            text(s.execute(&add(13, None, Some("hello")), 1)),
            "{\"return\": {\"fd\": 13, \"fdset-id\": 1}}\r\n"
        );
        assert_eq!(
            text(s.execute(&add(14, Some(3), Some("x")), 1)),
            "{\"return\": {\"fd\": 14, \"fdset-id\": 3}}\r\n"
        );
        assert_eq!(
            text(s.execute(&add(20, Some(-1), None), 1)),
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'fdset-id' expects a non-negative value\"}}\r\n"
        );
        assert_eq!(s.expected_closes, vec![20]);
        s.expected_closes.clear();
        s.execute(&add(15, Some(0), None), 1);
        assert_eq!(
            text(s.execute(&call(FdSetOp::Query), 1)),
            "{\"return\": [{\"fds\": [{\"fd\": 14, \"opaque\": \"x\"}], \"fdset-id\": 3}, {\"fds\": [{\"fd\": 13, \"opaque\": \"hello\"}], \"fdset-id\": 1}, {\"fds\": [{\"fd\": 12}, {\"fd\": 15}], \"fdset-id\": 0}]}\r\n"
        );
        assert_eq!(
            text(s.execute(&call(FdSetOp::Remove { set: 7, fd: None }), 1)),
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"File descriptor named 'fdset-id:7' not found\"}}\r\n"
        );
        assert_eq!(
            text(s.execute(
                &call(FdSetOp::Remove {
                    set: 3,
                    fd: Some(99)
                }),
                1
            )),
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"File descriptor named 'fdset-id:3, fd:99' not found\"}}\r\n"
        );
        // Paused: a removed fd stays listed and can be removed again.
        s.running = false;
        let rm14 = call(FdSetOp::Remove {
            set: 3,
            fd: Some(14),
        });
        assert_eq!(text(s.execute(&rm14, 1)), "{\"return\": {}}\r\n");
        assert_eq!(text(s.execute(&rm14, 1)), "{\"return\": {}}\r\n");
        assert!(s.holds(14) && s.expected_closes.is_empty());
        s.cleanup(0);
        assert!(s.holds(14) && s.expected_closes.is_empty());
        // Running again: a close with another connection open closes removed fds only.
        s.running = true;
        s.cleanup(1);
        assert_eq!(s.expected_closes, vec![14]);
        assert!(!s.holds(14) && s.holds(13));
        assert_eq!(s.settle_closes(&[14, 99]), Ok(()));
        // The last connection closes: everything goes.
        s.cleanup(0);
        assert_eq!(s.expected_closes, vec![12, 15, 13]);
        assert!(s.is_empty());
        assert!(s.settle_closes(&[13, 12]).is_err());
    }

    #[test]
    fn ids_fill_the_first_gap_and_a_closed_fd_still_held_is_a_failure() {
        let mut s = FdSets::default();
        s.execute(&add(1, Some(0), None), 1);
        s.execute(&add(2, Some(2), None), 1);
        assert_eq!(
            text(s.execute(&add(3, None, None), 1)),
            "{\"return\": {\"fd\": 3, \"fdset-id\": 1}}\r\n"
        );
        assert_eq!(
            text(s.execute(&add(4, None, None), 1)),
            "{\"return\": {\"fd\": 4, \"fdset-id\": 3}}\r\n"
        );
        assert!(s.settle_closes(&[2]).is_err());
    }
}
