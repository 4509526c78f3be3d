//! Event rate limiting, QEMU 7.2's algorithm (spec §8.3) on the clock passed in.
//!
//! One state per key (event name, plus one `data` member for keyed rules), global across
//! monitors. The first event of a burst goes out at once and opens a period; events during the
//! period replace each other as "pending"; at the end of the period a pending event is sent and
//! a new period starts, otherwise the state is freed. The number of states is bounded by the
//! number of distinct keys in flight: each is freed one quiet period after its last event.

use std::collections::BTreeMap;

use super::config::ThrottleRule;
use super::types::{Instant, Timestamp};
use crate::json::{JsonString, Object};

/// An event as it entered the server (sent unchanged when delayed, timestamp included).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Event {
    pub(crate) name: String,
    pub(crate) data: Object,
    pub(crate) timestamp: Timestamp,
}

/// Throttle key: event name and, for keyed rules, the key member's string value.
type Key = (String, Option<JsonString>);

#[derive(Debug)]
struct State {
    pending: Option<Event>,
    deadline: Instant,
    period_ns: u64,
}

/// What the throttle decided for an event.
pub(crate) enum Verdict {
    /// Broadcast now.
    Send(Event),
    /// Held as the pending event of a running period; `replaced` if it displaced another.
    Held { replaced: bool },
}

/// What a due timer produced.
pub(crate) enum Fired {
    /// The period's pending event: broadcast it (a new period has started).
    Send(Event),
    /// The period ended quietly; the state was freed.
    Freed,
}

/// The throttle table and its running states.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    rules: Vec<ThrottleRule>,
    states: BTreeMap<Key, State>,
}

impl Throttle {
    pub(crate) fn new(rules: Vec<ThrottleRule>) -> Throttle {
        Throttle {
            rules,
            states: BTreeMap::new(),
        }
    }

    /// Apply the algorithm to an event arriving at `now`.
    pub(crate) fn offer(&mut self, now: Instant, ev: Event) -> Verdict {
        let Some(rule) = self
            .rules
            .iter()
            .find(|r| r.event == ev.name && r.period_ns > 0)
        else {
            return Verdict::Send(ev);
        };
        let key_value = rule
            .data_key
            .as_ref()
            .and_then(|k| ev.data.get(k))
            .and_then(|v| v.as_json_string())
            .cloned();
        let key = (ev.name.clone(), key_value);
        match self.states.get_mut(&key) {
            Some(state) => {
                let replaced = state.pending.replace(ev).is_some();
                Verdict::Held { replaced }
            }
            None => {
                let period_ns = rule.period_ns;
                self.states.insert(
                    key,
                    State {
                        pending: None,
                        deadline: now.plus_nanos(period_ns),
                        period_ns,
                    },
                );
                Verdict::Send(ev)
            }
        }
    }

    /// The earliest period end, if any period is running.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.states.values().map(|s| s.deadline).min()
    }

    /// End every period due at `now`, each at most once, earliest first (ties by key).
    pub(crate) fn fire_due(&mut self, now: Instant, drop_pending: bool) -> Vec<Fired> {
        let mut due: Vec<(Instant, Key)> = self
            .states
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(k, s)| (s.deadline, k.clone()))
            .collect();
        if due.is_empty() {
            return Vec::new();
        }
        due.sort();
        let mut fired = Vec::with_capacity(due.len());
        for (_, key) in due {
            let Some(state) = self.states.get_mut(&key) else {
                continue;
            };
            let pending = if drop_pending {
                state.pending.take().map(|_| ())
            } else {
                None
            };
            match (state.pending.take(), pending) {
                (Some(ev), _) => {
                    state.deadline = now.plus_nanos(state.period_ns);
                    fired.push(Fired::Send(ev));
                }
                (None, Some(())) => {
                    // Planted bug: the pending event is lost, the period restarts empty.
                    state.deadline = now.plus_nanos(state.period_ns);
                }
                (None, None) => {
                    self.states.remove(&key);
                    fired.push(Fired::Freed);
                }
            }
        }
        fired
    }

    /// Number of running states (for memory accounting and tests).
    pub(crate) fn states(&self) -> usize {
        self.states.len()
    }

    pub(crate) fn memory_estimate(&self) -> usize {
        self.states
            .iter()
            .map(|((n, k), s)| {
                std::mem::size_of::<(Key, State)>()
                    + n.capacity()
                    + k.as_ref().map_or(0, |k| k.heap_bytes())
                    + s.pending
                        .as_ref()
                        .map_or(0, |e| e.name.capacity() + 64 * e.data.len())
            })
            .sum()
    }
}
