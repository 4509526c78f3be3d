//! [`Core`] for the real `qmp_core::server::Server`, and how the simulator configures one.

use qmp_core::server::{
    Config, Dialect, FdId, Input, Instant, MonitorId, Output, PlantedBug, RunState, Server,
    TakeFdError,
};

use crate::options::Options;
use crate::registry::commands;
use crate::sut::Core;
use crate::world::WALL_BASE_NS;

/// The server configuration a seed's world uses (with an optional planted bug).
pub fn config(opts: &Options, bug: Option<PlantedBug>) -> Config {
    // Each dialect with its own tables (2.12: its throttle table).
    let base = match opts.dialect {
        Dialect::Qemu212 => Config::qemu212(),
        Dialect::Qemu72 => Config::default(),
    };
    let mut c = Config {
        version: crate::world::to_value(&crate::world::version_j()),
        planted_bug: bug,
        input_buffer_limit: opts.input_buffer_limit,
        output_limit: opts.output_limit,
        ..base
    };
    c.wall_clock_base.seconds = WALL_BASE_NS / 1_000_000_000;
    if opts.preconfig {
        c.run_state = RunState::Preconfig;
    }
    c
}

/// A configured server with the simulator's commands (QMP and HMP) registered.
pub fn build(config: Config) -> Server {
    let mut s = Server::new(config);
    for spec in commands() {
        // The names are fixed and distinct from the built-ins; a refusal would show up as
        // "call-unknown"/"reference-model" failures, so it is not hidden here either.
        let _ = s.register(spec);
    }
    for cmd in crate::hmp_registry::hmp_commands() {
        // Likewise: a refused one shows up as the people's lines printing the wrong text.
        let _ = s.register_hmp(cmd);
    }
    s
}

impl Core for Server {
    fn handle(&mut self, now: Instant, input: Input) -> Result<(), String> {
        Server::handle(self, now, input).map_err(|e| e.to_string())
    }
    fn poll_output(&mut self) -> Option<Output> {
        Server::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Server::poll_timeout(self)
    }
    fn pending_output(&self, m: MonitorId) -> &[u8] {
        Server::pending_output(self, m)
    }
    fn wants_read(&self, m: MonitorId) -> bool {
        Server::wants_read(self, m)
    }
    fn dispatcher_ready(&self) -> bool {
        Server::dispatcher_ready(self)
    }
    fn queue_len(&self, m: MonitorId) -> usize {
        Server::queue_len(self, m)
    }
    fn suspend_count(&self, m: MonitorId) -> i64 {
        Server::suspend_count(self, m) as i64
    }
    fn probes(&self) -> Vec<(String, u64)> {
        Server::probes(self)
            .list()
            .into_iter()
            .map(|(n, c)| (n.to_string(), c))
            .collect()
    }
    fn memory_estimate(&self) -> usize {
        Server::memory_estimate(self)
    }
    fn digest(&self) -> u64 {
        Server::digest(self).0
    }
    fn take_named_fd(
        &mut self,
        now: Instant,
        m: MonitorId,
        name: &str,
    ) -> Result<FdId, TakeFdError> {
        Server::take_named_fd(self, now, m, name)
    }
    fn named_fds(&self, m: MonitorId) -> Vec<String> {
        Server::named_fds(self, m)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }
}
