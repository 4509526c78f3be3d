//! The handlers' side of the driver world: the [`Control`] the world offers handlers, and
//! `x-oob-test` run by the demo machine of qmp-driver itself (the one qmpd runs), so that its
//! rule "a lock is let go when its holder's session closes" is what the world checks.
//!
//! The demo's in-band `lock: true` blocks its thread until the unlock or its holder's end, so
//! it runs on a thread of its own; the world's model of the semaphore says when it must have
//! returned, and the world then waits for its result at most [`LOCK_RELEASE_WAIT`] (a handler
//! that is still blocked then has outlived its cause: a failure, never a timing guess in a
//! passing run). Every other handler the world answers itself.

use std::collections::BTreeSet;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qmp_core::json::Object;
use qmp_core::server::{Call, CallResult, MonitorId, RunState, TakeFdError};
use qmp_driver::{AddClient, ConnId, Control, Registry, TakenFd};

/// Longest wall time the world waits for a lock handler its model says is released.
pub const LOCK_RELEASE_WAIT: Duration = Duration::from_secs(2);

/// What handlers see of the world.
#[derive(Default)]
pub struct SimControl {
    open: Mutex<BTreeSet<ConnId>>,
    /// Control calls no handler of the driver world may make (reported as failures).
    unexpected: Mutex<Vec<&'static str>>,
}

impl SimControl {
    /// `session` was accepted.
    pub fn opened(&self, session: ConnId) {
        if let Ok(mut o) = self.open.lock() {
            o.insert(session);
        }
    }

    /// `session` is closed (before the registry's hooks are told, as an adapter must).
    pub fn closed(&self, session: ConnId) {
        if let Ok(mut o) = self.open.lock() {
            o.remove(&session);
        }
    }

    /// Control calls no handler should have made, so far.
    pub fn unexpected(&self) -> Vec<&'static str> {
        self.unexpected
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default()
    }

    fn note(&self, what: &'static str) {
        if let Ok(mut u) = self.unexpected.lock() {
            u.push(what);
        }
    }
}

impl Control for SimControl {
    fn emit_event(&self, _name: &str, _data: Object) {
        self.note("emit_event");
    }
    fn set_run_state(&self, _state: RunState) {
        self.note("set_run_state");
    }
    fn request_shutdown(&self) {
        self.note("request_shutdown");
    }
    fn chardevs(&self) -> Vec<String> {
        vec!["mon0".into()]
    }
    fn yank_chardev(&self, _id: &str) -> bool {
        self.note("yank_chardev");
        false
    }
    fn session_open(&self, session: ConnId) -> bool {
        self.open.lock().is_ok_and(|o| o.contains(&session))
    }
    fn take_named_fd(&self, _monitor: MonitorId, name: &str) -> Result<TakenFd, TakeFdError> {
        self.note("take_named_fd");
        Err(TakeFdError::NotFound { name: name.into() })
    }
    fn add_client(&self, _chardev: &str, _fd: TakenFd) -> AddClient {
        self.note("add_client");
        AddClient::NoSuchChardev
    }
}

/// A handler call running on its own thread.
#[derive(Debug)]
pub struct Running {
    rx: Receiver<CallResult>,
}

impl Running {
    /// Run `call` of `session` through `registry` on a thread.
    pub fn spawn(
        registry: &Registry,
        control: &Arc<SimControl>,
        call: &Call,
        session: ConnId,
    ) -> Running {
        let (tx, rx) = mpsc::channel();
        let (registry, control, call) = (registry.clone(), control.clone(), call.clone());
        std::thread::spawn(move || {
            let result = registry.run(&*control, &call, session);
            let _ = tx.send(result);
        });
        Running { rx }
    }

    /// Its result, once it returned; `None` when it is still blocked after
    /// [`LOCK_RELEASE_WAIT`].
    pub fn finish(&self) -> Option<CallResult> {
        self.rx.recv_timeout(LOCK_RELEASE_WAIT).ok()
    }
}
