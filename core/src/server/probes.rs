//! Coverage marks: plain counters bumped on rare branches, so the simulator can show that its
//! worlds reach them (issue 4, "Teeth"). Deterministic, per server, no globals.

use serde::{Deserialize, Serialize};

macro_rules! probes {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Counters of rare branches taken by one [`super::Server`].
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Probes {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Probes {
            /// Every probe as `(name, count)`, in declaration order.
            pub fn list(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }
    };
}

probes! {
    /// 7.2 with OOB: an enqueue filled the queue and suspended the monitor.
    queue_full_suspend,
    /// Close resumed a monitor its queue had suspended (and dropped queued requests).
    resume_on_close,
    /// Close dropped queued requests without replying.
    queued_dropped_on_close,
    /// A throttled event replaced an earlier pending one (last one wins).
    throttle_replaced,
    /// A throttle period ended with a pending event, which was sent.
    throttle_fired,
    /// A throttle period ended quietly and the key's state was freed.
    throttle_state_freed,
    /// An event arrived while its key's period was running and became pending.
    throttle_delayed,
    /// `Written` covered part of the pending output: some bytes, not all.
    partial_write,
    /// Lexing stopped at a suspension in the middle of a received chunk.
    stopped_mid_read,
    /// Input of a monitor waited for its outstanding out-of-band call (buffered bytes, or a
    /// message completed by the same byte).
    oob_call_held_input,
    /// Buffered bytes were lexed after a resume.
    resumed_buffered_input,
    /// `getfd` replaced an fd of the same name.
    fd_replaced,
    /// Newly received fds replaced (closed) older unclaimed ones.
    pending_fds_replaced,
    /// A command took one fd and closed the others received with it.
    extra_fds_closed,
    /// 2.12: a request was dropped because the queue was full (`COMMAND_DROPPED`).
    command_dropped,
    /// A monitor's pending output passed the output limit.
    output_limit_disconnect,
    /// A monitor's unprocessed input passed the input buffer limit.
    input_limit_disconnect,
    /// A JSON error went into the in-band queue.
    json_error_queued,
    /// An OOB call was issued while the monitor had in-band work queued or running.
    oob_overtake,
    /// In negotiation mode a CommandNotFound desc was replaced.
    negotiation_desc_replaced,
    /// An event skipped a monitor still in negotiation mode.
    event_skipped_unnegotiated,
    /// A call completed after its session had closed (reply dropped).
    reply_to_closed_monitor,
    /// A monitor was suspended more than once at the same time (nesting).
    nested_suspend,
    /// The dispatcher served a monitor after passing over others with empty queues.
    round_robin_skip,
    /// A command with no success response succeeded (no reply sent).
    no_success_response,
    /// Fd-set cleanup closed descriptors.
    fdset_cleanup_closed,
    /// A session opened on a monitor that had a client before (a reconnect).
    reopened,
    /// A reconnect found named fds left by an earlier session.
    named_fds_survived,
    /// A reconnect came while a call of an earlier session still ran.
    reopened_while_call_runs,
    /// A call completed after its session had closed, and the monitor it came from was
    /// still there (its suspension or OOB hold was released).
    call_outlived_session,
    /// A handler took a named fd (`Server::take_named_fd`).
    named_fd_taken,
}
