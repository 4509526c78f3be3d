//! Target `server_bytes`: a negotiated monitor (either dialect) fed raw bytes, with the
//! simulator's invariants checked.
//!
//! Input format: two header bytes, then the payload a client sends after negotiating.
//! * byte 0, bit 0: QEMU 2.12 dialect (else 7.2); bit 1: the monitor is OOB-capable (7.2) /
//!   `x-oob` (2.12); bit 2: negotiate with `"enable": ["oob"]` (only when capable: asking an
//!   incapable monitor for OOB fails negotiation, a path `scenario` covers); bit 3: pretty;
//!   bits 4–7: chunk size, an index into [`CHUNKS`] (0: one byte per input, QEMU's pace).
//! * byte 1, bit 0: small JSON limits ([`SMALL_LIMITS`]); bit 1: small output limit.
//!
//! The simulator's trivial embedder (`run_inputs_driven`) completes every call at once, runs
//! the dispatcher whenever it is ready and writes all output.
//!
//! Properties:
//! 1. `run_inputs_driven` finds no broken invariant (no panic, only well-formed QMP output
//!    lines, fds and calls accounted for). Its embedder may queue a `NextInBand` or `Written`
//!    that a previous step made stale; the core refuses those as misuse, which is allowed.
//! 2. Without OOB, replies cannot overtake each other, so the output (the digest of every
//!    message, call and fd closing, in order) is the same whether the payload arrives in one
//!    read or in the fuzzer's chunks (with the default output limit: a small one is crossed
//!    or not depending on how much output piles up between writes).

use qmp_core::server::{Config, FdId, Input, Instant, MonitorId, MonitorOptions};

use crate::cursor::Cursor;
use crate::json_stream::SMALL_LIMITS;
use crate::known;
use crate::scenario::SMALL_OUTPUT_LIMIT;

/// Chunk sizes selectable by the header's high nibble.
pub const CHUNKS: [usize; 16] = [
    1,
    2,
    3,
    5,
    7,
    11,
    16,
    31,
    64,
    100,
    255,
    256,
    1000,
    1024,
    4096,
    usize::MAX,
];

/// The monitor every input goes to.
const MON: MonitorId = MonitorId(1);

/// Nanoseconds between inputs: every input gets a distinct `now`.
const STEP_NS: u64 = 1_000;

fn inputs(
    oob_capable: bool,
    pretty: bool,
    oob: bool,
    payload: &[u8],
    chunk: usize,
) -> Vec<(Instant, Input)> {
    let negotiate: &[u8] = if oob {
        b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}\n"
    } else {
        b"{\"execute\": \"qmp_capabilities\"}\n"
    };
    let mut v = vec![
        Input::Open {
            monitor: MON,
            options: MonitorOptions {
                oob_capable,
                pretty,
            },
        },
        Input::Receive {
            monitor: MON,
            bytes: negotiate.to_vec(),
            fds: Vec::new(),
        },
    ];
    for (i, piece) in payload.chunks(chunk.max(1)).enumerate() {
        // One descriptor with every 8th chunk, so fd passing meets `getfd`/`add-fd` in the
        // payload now and then.
        let fds = if i % 8 == 7 {
            vec![FdId(1000 + i as u64)]
        } else {
            Vec::new()
        };
        v.push(Input::Receive {
            monitor: MON,
            bytes: piece.to_vec(),
            fds,
        });
    }
    v.push(Input::Close { monitor: MON });
    v.into_iter()
        .enumerate()
        .map(|(i, input)| (Instant(i as u64 * STEP_NS), input))
        .collect()
}

/// The target body.
pub fn run(data: &[u8]) {
    let mut c = Cursor::new(data);
    let flags = c.u8();
    let more = c.u8();
    let payload = c.rest();
    let mut config = if flags & 1 != 0 {
        Config::qemu212()
    } else {
        Config::default()
    };
    if more & 1 != 0 {
        config.json_limits = SMALL_LIMITS;
    }
    if more & 2 != 0 {
        config.output_limit = SMALL_OUTPUT_LIMIT;
    }
    let oob_capable = flags & 2 != 0;
    let oob = oob_capable && flags & 4 != 0;
    let pretty = flags & 8 != 0;
    let chunk = CHUNKS[usize::from(flags >> 4)];
    let registry = qmp_sim::registry::commands();

    let chunked = inputs(oob_capable, pretty, oob, payload, chunk);
    let run = known::Run {
        config: &config,
        registry: &registry,
        inputs: &chunked,
        driven: true,
    };
    let checked = qmp_sim::check::run_inputs_driven(&config, &registry, &chunked);
    let Some(report) = known::check(checked, &run) else {
        return;
    };

    // The output limit legitimately depends on chunking (how much output piles up between two
    // writes of the driven embedder), so compare only with the default (256 MiB) limit.
    if !oob && chunk != usize::MAX && more & 2 == 0 {
        // Same fds with the one-read form: attach them all to the single chunk would change
        // which request sees them, so compare only payloads short enough to carry none.
        if payload.len() <= chunk.saturating_mul(7) {
            let whole = inputs(oob_capable, pretty, oob, payload, usize::MAX);
            let run = known::Run {
                config: &config,
                registry: &registry,
                inputs: &whole,
                driven: true,
            };
            let checked = qmp_sim::check::run_inputs_driven(&config, &registry, &whole);
            let Some(one) = known::check(checked, &run) else {
                return;
            };
            assert_eq!(
                one.digest, report.digest,
                "output depends on how the bytes were split"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::run;

    #[test]
    fn pipelined_requests_in_any_chunking() {
        let payload = b"{\"execute\": \"sim-echo\", \"arguments\": {\"tag\": 1}, \"id\": 1}\
            {\"exec-oob\": \"sim-oob\", \"arguments\": {\"tag\": 2}}{]\x1b\"x";
        for flags in [0x00u8, 0x02, 0x06, 0x0F, 0x31, 0x37, 0xF6] {
            for more in [0u8, 1, 3] {
                let mut data = vec![flags, more];
                data.extend_from_slice(payload);
                run(&data);
            }
        }
    }
}
