//! Every speed knob of the std adapter, in one place: spins, batching and chunk sizes. None of
//! them changes what a client sees (bytes, order, limits: those are the core's and the
//! driver's); they trade CPU for latency on a machine with few cores. Figures behind the
//! values are in BENCHMARKS.md.
//!
//! Why spin at all: waking a sleeping thread costs a futex or eventfd write and, on a small VM,
//! an interrupt to a halted virtual CPU, more than the adapter's own work per request. So a
//! thread about to sleep first spins for a bounded time on an atomic hint that whoever leaves
//! it work sets (see `shared`'s "Spinning"); every spin gives the CPU away each turn
//! (`sched_yield`) and only happens after work, so an idle daemon sleeps.

use std::time::Duration;

use qmp_core::server::QMP_REQ_QUEUE_LEN_MAX;

/// How long the dispatcher spins for more work before it sleeps on its condition variable:
/// longer than a pipelining client's turnaround (read the replies, write the next requests),
/// short enough that an idle daemon's dispatcher sleeps at once in human terms.
pub const DISPATCHER_SPIN: Duration = Duration::from_micros(100);

/// How long the IO thread, after a pass, keeps looking for work (its hint, and socket
/// readiness with a zero-timeout poll) before its last look and a sleeping poll.
pub const IO_SPIN: Duration = Duration::from_micros(100);

/// How long after the dispatcher took a call of a connection the IO thread leaves that
/// connection's output to the dispatcher's write at the end of its run of calls (so a batch of
/// replies goes out in one write): far longer than a query handler takes, well inside the
/// 200 µs asked of an out-of-band reply (which never waits this way).
pub const WRITE_LEFT_TO_DISPATCHER: Duration = Duration::from_micros(50);

/// The most in-band calls of one connection the dispatcher runs in a row before it writes
/// their replies: the core's request queue length, so a client keeping its queue full still
/// gets its replies a queue at a time.
pub const RUN_WRITE_CALLS: u32 = QMP_REQ_QUEUE_LEN_MAX as u32;

/// Turns of the lock's busy-wait that keep the CPU before it gives the CPU away each turn
/// (`sync::lock`): the other thread's critical section is usually over by then.
pub const LOCK_PAUSES: usize = 256;

/// How long `sync::lock` spins on a held lock before it blocks: longer than the adapter's
/// critical sections (one read's requests parsed, one write), far shorter than a handler.
pub const LOCK_SPIN: Duration = Duration::from_micros(20);

/// Bytes asked for per read by the IO thread. The core may stop mid-chunk when a request
/// suspends the monitor and keeps the rest; this bounds what it keeps beyond that point.
pub const READ_CHUNK: usize = 32 * 1024;

/// Bytes the dispatcher reads at once while it spins: a batch of small requests fits many
/// times over; larger input is left to the IO thread.
pub const DISPATCHER_READ_CHUNK: usize = 16 * 1024;

/// Reads per connection per IO-thread pass, so one busy client cannot starve the others.
pub const READS_PER_PASS: usize = 8;

/// Events taken per poll.
pub const EVENTS_CAPACITY: usize = 256;

/// Bytes handed to one `write` call.
pub const WRITE_CHUNK: usize = 256 * 1024;

/// Writes per connection per flush, so one client that keeps draining its socket cannot hold
/// the lock for ever; the rest goes out on the IO thread's next pass.
pub const WRITES_PER_FLUSH: usize = 16;

/// How long shutdown waits for the last replies (the `quit` return, the SHUTDOWN event) to be
/// written before it closes every connection.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// How long the builder waits for the dispatcher at shutdown (a handler that never returns
/// must not keep the process alive).
pub const DISPATCHER_JOIN: Duration = Duration::from_secs(2);
