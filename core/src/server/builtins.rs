//! The commands the core answers itself: `qmp_capabilities` (§3), `query-version`,
//! `query-commands`, and the fd commands `getfd`, `closefd`, `add-fd`, `remove-fd`,
//! `query-fdsets` (§10), with QEMU 7.2's texts and ordering. Arguments were checked against
//! the built-in schemas before these run.

use super::config::Dialect;
use super::registry::Builtin;
use super::types::{ErrorClass, FdId, MonitorId};
use super::Server;
use crate::json::{JsonString, Object, Value};

type BuiltinResult = Result<Value, (ErrorClass, Vec<u8>)>;

fn generic(desc: impl Into<Vec<u8>>) -> (ErrorClass, Vec<u8>) {
    (ErrorClass::GenericError, desc.into())
}

fn empty() -> Value {
    Value::Object(Object::new())
}

impl Server {
    pub(super) fn run_builtin(
        &mut self,
        mid: MonitorId,
        b: Builtin,
        args: &Object,
    ) -> BuiltinResult {
        match b {
            Builtin::QmpCapabilities => self.qmp_capabilities(mid, args),
            Builtin::QueryVersion => Ok(self.config.version.clone()),
            Builtin::QueryCommands => Ok(Value::Array(
                self.registry
                    .names_newest_first()
                    .map(|n| {
                        let mut o = Object::with_capacity(1);
                        o.insert("name", Value::string(n));
                        Value::Object(o)
                    })
                    .collect(),
            )),
            Builtin::Getfd => self.getfd(mid, str_arg(args, "fdname")),
            Builtin::Closefd => self.closefd(mid, str_arg(args, "fdname")),
            Builtin::AddFd => {
                let Some(fd) = self.claim_fd(mid) else {
                    return Err(generic("No file descriptor supplied via SCM_RIGHTS"));
                };
                let set = args.get("fdset-id").and_then(Value::as_i64);
                let opaque = args.get("opaque").and_then(Value::as_json_string).cloned();
                match self.fdsets.add(fd, set, opaque) {
                    Ok(info) => Ok(info),
                    Err((fd, desc)) => {
                        self.close_fd(fd);
                        Err(generic(desc))
                    }
                }
            }
            Builtin::RemoveFd => {
                let set = args.get("fdset-id").and_then(Value::as_i64).unwrap_or(0);
                let fd = args.get("fd").and_then(Value::as_i64);
                let mut closed = Vec::new();
                let cleanup = self.cleanup_state();
                let r = self.fdsets.remove(set, fd, cleanup, &mut closed);
                if !closed.is_empty() {
                    self.probes.fdset_cleanup_closed += 1;
                }
                for fd in closed {
                    self.close_fd(fd);
                }
                r.map(|()| empty()).map_err(generic)
            }
            Builtin::QueryFdsets => Ok(self.fdsets.query()),
            // Run by `dispatch.rs` (it may issue a call); never reaches here.
            Builtin::HumanMonitorCommand => Ok(empty()),
        }
    }

    /// `qmp_qmp_capabilities` + `qmp_caps_accept`.
    fn qmp_capabilities(&mut self, mid: MonitorId, args: &Object) -> BuiltinResult {
        let Some(m) = self.monitors.get(&mid) else {
            return Ok(empty());
        };
        if m.negotiated {
            return Err((
                ErrorClass::CommandNotFound,
                b"Capabilities negotiation is already complete, command ignored".to_vec(),
            ));
        }
        let requested: Vec<&JsonString> = args
            .get("enable")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(Value::as_json_string).collect())
            .unwrap_or_default();
        let offered = m.options.oob_capable;
        let wants_oob = !requested.is_empty();
        if !offered && wants_oob {
            return Err(match self.config.dialect {
                Dialect::Qemu72 => {
                    // Every requested capability that is not offered, duplicates included.
                    let names: Vec<&[u8]> = requested.iter().map(|s| s.as_bytes()).collect();
                    let mut d = b"Capability ".to_vec();
                    d.extend_from_slice(&names.join(&b", "[..]));
                    d.extend_from_slice(b" not available");
                    generic(d)
                }
                Dialect::Qemu212 => generic("This monitor does not support Out-Of-Band (OOB)"),
            });
        }
        if let Some(m) = self.monitors.get_mut(&mid) {
            m.negotiated = true;
            m.oob_enabled = wants_oob;
        }
        Ok(empty())
    }

    /// `qemu_chr_fe_get_msgfd`: take the first pending fd, close the others.
    fn claim_fd(&mut self, mid: MonitorId) -> Option<FdId> {
        let m = self.monitors.get_mut(&mid)?;
        if m.pending_fds.is_empty() {
            return None;
        }
        let mut fds = std::mem::take(&mut m.pending_fds).into_iter();
        let first = fds.next();
        let rest: Vec<FdId> = fds.collect();
        if !rest.is_empty() {
            self.probes.extra_fds_closed += 1;
        }
        for fd in rest {
            self.close_fd(fd);
        }
        first
    }

    fn getfd(&mut self, mid: MonitorId, name: JsonString) -> BuiltinResult {
        let Some(fd) = self.claim_fd(mid) else {
            return Err(generic("No file descriptor supplied via SCM_RIGHTS"));
        };
        if name.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            self.close_fd(fd);
            return Err(generic(
                "Parameter 'fdname' expects a name not starting with a digit",
            ));
        }
        let Some(m) = self.monitors.get_mut(&mid) else {
            self.close_fd(fd);
            return Ok(empty());
        };
        if let Some(slot) = m.named_fds.iter_mut().find(|(n, _)| *n == name) {
            let old = std::mem::replace(&mut slot.1, fd);
            self.probes.fd_replaced += 1;
            self.close_fd(old);
        } else {
            m.named_fds.insert(0, (name, fd));
        }
        Ok(empty())
    }

    fn closefd(&mut self, mid: MonitorId, name: JsonString) -> BuiltinResult {
        let Some(m) = self.monitors.get_mut(&mid) else {
            return Ok(empty());
        };
        match m.named_fds.iter().position(|(n, _)| *n == name) {
            Some(i) => {
                let (_, fd) = m.named_fds.remove(i);
                self.close_fd(fd);
                Ok(empty())
            }
            None => {
                let mut d = b"File descriptor named '".to_vec();
                d.extend_from_slice(name.as_bytes());
                d.extend_from_slice(b"' not found");
                Err(generic(d))
            }
        }
    }
}

fn str_arg(args: &Object, key: &str) -> JsonString {
    args.get(key)
        .and_then(Value::as_json_string)
        .cloned()
        .unwrap_or_default()
}
