//! The world's side of fd sets and of the input limit: the VM run state it switches, the
//! fd-set cleanup it expects at each monitor close and at exit, the check that the core
//! closed exactly the set descriptors the model ([`crate::fdsets`]) says, and the check of
//! an input-limit disconnect.

use qmp_core::server::{Config, Input, MonitorId, RunState};

use super::World;
use crate::failure::Failure;
use crate::sut::Core;

impl<C: Core> World<C> {
    /// Monitor connections open in the core (QEMU's `mon_refcount`, which counts human
    /// monitors too): a connection the core gave up on stays open until the world reports its
    /// close.
    pub(super) fn open_sessions(&self) -> usize {
        self.clients.iter().filter(|c| c.conn.is_some()).count() + self.hmp.open_monitors().count()
    }

    /// The VM stops or continues (another subsystem: `stop`, `cont`).
    pub(super) fn toggle_run_state(&mut self) -> Result<(), Failure> {
        self.fdsets.running = !self.fdsets.running;
        let state = if self.fdsets.running {
            RunState::Running
        } else {
            RunState::Paused
        };
        self.apply(Input::SetRunState(state))
    }

    /// After every input: the descriptors the core closed in it include every fd-set
    /// descriptor the model closed (at `remove-fd`, `add-fd` with a negative id, a monitor
    /// close), and none the model still holds in a set.
    pub(super) fn settle_fdset_closes(&mut self) -> Result<(), Failure> {
        let closed = std::mem::take(&mut self.closed_now);
        self.fdsets
            .settle_closes(&closed)
            .map_err(|e| self.fail(Failure::correctness("fdset-cleanup", e)))
    }

    /// An input-limit disconnect of monitor `m` is due only in a world with a small limit,
    /// while the monitor's own bytes are read, and (where the world counts them: `sent`) after
    /// more bytes than the limit were handed over. A human monitor's typed-ahead keys count
    /// like a QMP client's pipelined requests.
    pub(super) fn check_input_limit_of(
        &self,
        m: MonitorId,
        limit: usize,
        sent: Option<u64>,
    ) -> Result<(), Failure> {
        let default = Config::default().input_buffer_limit;
        if self.opts.input_buffer_limit == default
            || limit != self.opts.input_buffer_limit
            || self.receiving != Some(m)
            || sent.is_some_and(|sent| sent <= limit as u64)
        {
            return Err(self.fail(Failure::correctness(
                "input-limit",
                format!(
                    "monitor {}: input limit {limit} hit (configured {}, {sent:?} bytes handed over, reading {:?}); the world reads only while wants_read, so one read's leftover is all the core may hold",
                    m.0,
                    self.opts.input_buffer_limit,
                    self.receiving.map(|m| m.0)
                ),
            )));
        }
        Ok(())
    }

    /// Before the clients leave at exit: a VM left stopped continues, so the last close
    /// releases every fd set (QEMU would leave them to the process exit).
    pub(super) fn run_before_exit(&mut self) -> Result<(), Failure> {
        if !self.fdsets.is_empty() && !self.fdsets.running {
            self.toggle_run_state()?;
        }
        Ok(())
    }

    /// Every connection is closed: if fd sets remain (the last close came while the VM was
    /// stopped), a client connects and leaves once more, and that close releases them.
    pub(super) fn last_close_cleans_up(&mut self) -> Result<(), Failure> {
        if self.fdsets.is_empty() || self.clients.is_empty() {
            return Ok(());
        }
        self.connect(0)?;
        self.close_conn(0)?;
        if self.fdsets.is_empty() {
            Ok(())
        } else {
            Err(self.fail(Failure::correctness(
                "fdset-cleanup",
                "fd sets left after the last connection closed with the VM running".to_string(),
            )))
        }
    }
}
