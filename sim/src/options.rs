//! Swarm options: everything a seed decides about its world before the first step.
//!
//! Each seed enables its own subset of behaviours and fault rates (swarm testing), so rare
//! combinations get explored. The options are printed first, so a failing seed explains itself.

use std::fmt;

use qmp_core::server::{Config, Dialect};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The output limit of the worlds that draw a small one.
pub const SMALL_OUTPUT_LIMIT: usize = 4 * 1024;

/// The input buffer limit of the worlds that draw a small one: below the biggest read
/// (`max_read` 200 and 4096), so the bytes a suspension leaves unread in one read can pass it.
pub const SMALL_INPUT_LIMIT: usize = 128;

/// Upper bound on simulated clients per world (each owns one monitor).
pub const MAX_CLIENTS: usize = 4;

/// Everything derived from one seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The seed all of this came from.
    pub seed: u64,
    /// Which QEMU the server imitates.
    pub dialect: Dialect,
    /// Number of clients (one monitor each).
    pub clients: usize,
    /// Per client: the monitor offers OOB (7.2) / was configured with x-oob (2.12).
    pub oob_capable: Vec<bool>,
    /// Per client: the monitor pretty-prints.
    pub pretty: Vec<bool>,
    /// Client requests in this world (the safety phase stops after this many).
    pub requests: u32,
    /// Chance a connection negotiates at all.
    pub p_negotiate: f64,
    /// Chance a negotiating client asks for OOB.
    pub p_enable_oob: f64,
    /// Chance a request is garbage (JSON errors, stray control bytes, non-objects).
    pub p_garbage: f64,
    /// Chance a request is malformed (structure or argument errors).
    pub p_bad: f64,
    /// Chance a request goes out-of-band (when OOB is enabled).
    pub p_oob: f64,
    /// Chance of the blocking `x-oob-test` pair (in-band lock released by an OOB unlock).
    pub p_lock: f64,
    /// Chance a request carries a big string or deep nesting.
    pub p_big: f64,
    /// Chance a request omits its id (or, when ids are free, repeats the previous one).
    pub p_odd_id: f64,
    /// Chance per client action of disconnecting (sometimes mid-message).
    pub p_disconnect: f64,
    /// Most in-band requests a client leaves unanswered before it waits.
    pub max_pipeline: u32,
    /// Largest read the network hands the server at once (1 = byte by byte).
    pub max_read: usize,
    /// Writes can be short (including zero-length).
    pub short_writes: bool,
    /// Chance per write of the client stalling (not reading) for a while.
    pub p_stall: f64,
    /// Mean in-band handler latency, nanoseconds.
    pub handler_latency_ns: u64,
    /// A share of handlers take 100x longer (heavy tail).
    pub p_slow_handler: f64,
    /// Mean gap between client actions, nanoseconds.
    pub client_gap_ns: u64,
    /// Chance per client action of another subsystem suspending the monitor for a while.
    pub p_suspend: f64,
    /// Mean gap between event bursts, nanoseconds (0 = no events).
    pub event_gap_ns: u64,
    /// Largest burst of events.
    pub max_burst: u32,
    /// Wall clock drift against the monotonic clock, parts per million.
    pub wall_drift_ppm: i64,
    /// Chance per event burst of the wall clock jumping (either way).
    pub p_wall_jump: f64,
    /// Chance a received chunk carries file descriptors.
    pub p_fds: f64,
    /// The core's per-monitor input buffer limit (`Config::input_buffer_limit`).
    pub input_buffer_limit: usize,
    /// The core's per-monitor output limit (`Config::output_limit`).
    pub output_limit: usize,
    /// 7.2: chance a well-formed in-band request is `sim-quiet` (no success response).
    pub p_quiet: f64,
    /// Chance a well-formed request is `add-fd`, `remove-fd` or `query-fdsets` (0 in worlds
    /// with a small output or input limit: a monitor given up with such a request queued
    /// would leave the global sets unknown).
    pub p_fdsets: f64,
    /// With fd sets: chance per client action of the VM stopping or continuing (fd-set
    /// cleanup only closes while it runs).
    pub p_pause: f64,
    /// Human monitors (HMP) beside the QMP clients (people typing at them).
    pub hmp_monitors: usize,
    /// 7.2 worlds with human monitors: the machine is in the preconfig phase (HMP commands
    /// without the `p` flag are refused; the QMP clients then pass no descriptors, as
    /// `getfd`/`closefd` need the machine).
    pub preconfig: bool,
}

fn pick(rng: &mut ChaCha8Rng, on: f64, lo: f64, hi: f64) -> f64 {
    if rng.random_bool(on) {
        rng.random_range(lo..hi)
    } else {
        0.0
    }
}

impl Options {
    /// Derives every option from `seed` (a dedicated generator: the world's own stream starts
    /// fresh, so adding an option here does not shift unrelated world decisions much).
    pub fn from_seed(seed: u64) -> Options {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5157_4f50_7469_6f6e);
        let dialect = if rng.random_bool(0.25) {
            Dialect::Qemu212
        } else {
            Dialect::Qemu72
        };
        let clients = rng.random_range(1..=MAX_CLIENTS);
        let oob_share = [0.0, 0.5, 1.0][rng.random_range(0..3)];
        let oob_capable = (0..clients).map(|_| rng.random_bool(oob_share)).collect();
        let pretty_share = [0.0, 0.3][rng.random_range(0..2)];
        let pretty = (0..clients)
            .map(|_| rng.random_bool(pretty_share))
            .collect();
        let max_read = [1, 3, 16, 200, 4096][rng.random_range(0..5)];
        Options {
            seed,
            dialect,
            clients,
            oob_capable,
            pretty,
            requests: rng.random_range(20..140),
            p_negotiate: [0.9, 1.0][rng.random_range(0..2)],
            p_enable_oob: [0.0, 0.5, 1.0][rng.random_range(0..3)],
            p_garbage: pick(&mut rng, 0.5, 0.01, 0.15),
            p_bad: pick(&mut rng, 0.6, 0.02, 0.2),
            p_oob: pick(&mut rng, 0.7, 0.05, 0.5),
            p_lock: pick(&mut rng, 0.4, 0.01, 0.08),
            p_big: pick(&mut rng, 0.3, 0.005, 0.05),
            p_odd_id: pick(&mut rng, 0.5, 0.02, 0.3),
            p_disconnect: pick(&mut rng, 0.5, 0.002, 0.03),
            max_pipeline: [1, 2, 4, 8, 12, 20][rng.random_range(0..6)],
            max_read,
            short_writes: rng.random_bool(0.5),
            p_stall: pick(&mut rng, 0.3, 0.01, 0.2),
            handler_latency_ns: [0, 1_000, 50_000, 2_000_000][rng.random_range(0..4)],
            p_slow_handler: pick(&mut rng, 0.3, 0.01, 0.1),
            client_gap_ns: [0, 10_000, 500_000, 20_000_000][rng.random_range(0..4)],
            p_suspend: pick(&mut rng, 0.3, 0.005, 0.05),
            event_gap_ns: [0, 1_000_000, 50_000_000, 400_000_000][rng.random_range(0..4)],
            max_burst: rng.random_range(1..12),
            wall_drift_ppm: [0, 50, -200, 10_000][rng.random_range(0..4)],
            p_wall_jump: pick(&mut rng, 0.2, 0.05, 0.3),
            p_fds: pick(&mut rng, 0.3, 0.01, 0.2),
            input_buffer_limit: Config::default().input_buffer_limit,
            output_limit: Config::default().output_limit,
            // Drawn last: the options above stay what they were for every seed.
            p_quiet: pick(&mut rng, 0.3, 0.02, 0.1),
            p_fdsets: 0.0,
            p_pause: 0.0,
            hmp_monitors: 0,
            preconfig: false,
        }
        .with_small_output_limit(&mut rng)
        .with_small_input_limit(&mut rng)
        .with_fdsets(&mut rng)
        .with_hmp(&mut rng)
    }

    /// In one world in three, one or two human monitors; a third of those (7.2 only) in
    /// the preconfig phase, where the QMP clients pass no descriptors (`getfd`/`closefd` need
    /// the machine), use no fd sets (`add-fd` is refused in preconfig) and the run state
    /// does not change.
    fn with_hmp(mut self, rng: &mut ChaCha8Rng) -> Options {
        if rng.random_bool(1.0 / 3.0) {
            self.hmp_monitors = rng.random_range(1..=2);
            self.preconfig = self.dialect == Dialect::Qemu72 && rng.random_bool(1.0 / 3.0);
            if self.preconfig {
                self.p_fds = 0.0;
                self.p_fdsets = 0.0;
                self.p_pause = 0.0;
            }
        }
        self
    }

    /// In one world in four, a per-monitor output limit of 4 KiB, so a stalled client or a
    /// big reply makes the core give up on it (`OutputLimit`).
    fn with_small_output_limit(mut self, rng: &mut ChaCha8Rng) -> Options {
        if rng.random_bool(0.25) {
            self.output_limit = SMALL_OUTPUT_LIMIT;
        }
        self
    }

    /// In one world in five, an input buffer limit of [`SMALL_INPUT_LIMIT`], so the bytes a
    /// suspension leaves unread make the core give up on the client (`InputLimit`).
    fn with_small_input_limit(mut self, rng: &mut ChaCha8Rng) -> Options {
        if rng.random_bool(0.2) {
            self.input_buffer_limit = SMALL_INPUT_LIMIT;
        }
        self
    }

    /// Fd sets in about half of the worlds that keep the default limits.
    fn with_fdsets(mut self, rng: &mut ChaCha8Rng) -> Options {
        let p = pick(rng, 0.6, 0.02, 0.15);
        let pause = pick(rng, 0.6, 0.005, 0.05);
        if self.limits_are_default() {
            self.p_fdsets = p;
            self.p_pause = if p > 0.0 { pause } else { 0.0 };
        }
        self
    }

    /// No small output or input limit was drawn: the core gives up on no client.
    pub fn limits_are_default(&self) -> bool {
        let d = Config::default();
        self.output_limit == d.output_limit && self.input_buffer_limit == d.input_buffer_limit
    }
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed={} dialect={:?} clients={}",
            self.seed, self.dialect, self.clients
        )?;
        writeln!(
            f,
            "  oob_capable={:?} pretty={:?} requests={}",
            self.oob_capable, self.pretty, self.requests
        )?;
        writeln!(
            f,
            "  p_negotiate={:.2} p_enable_oob={:.2} p_garbage={:.3} p_bad={:.3} p_oob={:.3} p_lock={:.3} p_big={:.3} p_odd_id={:.3}",
            self.p_negotiate, self.p_enable_oob, self.p_garbage, self.p_bad, self.p_oob, self.p_lock, self.p_big, self.p_odd_id
        )?;
        writeln!(
            f,
            "  p_disconnect={:.3} max_pipeline={} max_read={} short_writes={} p_stall={:.3}",
            self.p_disconnect, self.max_pipeline, self.max_read, self.short_writes, self.p_stall
        )?;
        writeln!(
            f,
            "  handler_latency_ns={} p_slow_handler={:.3} client_gap_ns={} p_suspend={:.3}",
            self.handler_latency_ns, self.p_slow_handler, self.client_gap_ns, self.p_suspend
        )?;
        writeln!(
            f,
            "  event_gap_ns={} max_burst={} wall_drift_ppm={} p_wall_jump={:.3} p_fds={:.3} p_quiet={:.3} output_limit={}",
            self.event_gap_ns, self.max_burst, self.wall_drift_ppm, self.p_wall_jump, self.p_fds, self.p_quiet, self.output_limit
        )?;
        write!(
            f,
            "  input_buffer_limit={} p_fdsets={:.3} p_pause={:.3}",
            self.input_buffer_limit, self.p_fdsets, self.p_pause
        )?;
        if self.hmp_monitors > 0 {
            write!(
                f,
                "\n  hmp_monitors={} preconfig={}",
                self.hmp_monitors, self.preconfig
            )?;
        }
        Ok(())
    }
}
