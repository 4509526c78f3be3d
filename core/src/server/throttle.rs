//! Event rate limiting, QEMU 7.2's algorithm (spec §8.3) on the clock passed in.
//!
//! One state per key (event name, plus one `data` member for keyed rules), global across
//! monitors. The first event of a burst goes out at once and opens a period; events during the
//! period replace each other as "pending"; at the end of the period a pending event is sent and
//! a new period starts, otherwise the state is freed. The number of states is bounded by the
//! number of distinct keys in flight: each is freed one quiet period after its last event.
//!
//! Invariant: `deadlines` holds exactly one `(deadline, key)` per state, so the earliest
//! deadline is its first entry and due periods are taken off its front, whatever the number
//! of keys (every input asks for the earliest deadline).

use std::collections::{BTreeMap, BTreeSet};

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
    /// The states' period ends, ordered (ties by key): one entry per state.
    deadlines: BTreeSet<(Instant, Key)>,
}

impl Throttle {
    pub(crate) fn new(rules: Vec<ThrottleRule>) -> Throttle {
        Throttle {
            rules,
            states: BTreeMap::new(),
            deadlines: BTreeSet::new(),
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
                let deadline = now.plus_nanos(period_ns);
                self.deadlines.insert((deadline, key.clone()));
                self.states.insert(
                    key,
                    State {
                        pending: None,
                        deadline,
                        period_ns,
                    },
                );
                Verdict::Send(ev)
            }
        }
    }

    /// The earliest period end, if any period is running.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// End every period due at `now`, each at most once, earliest first (ties by key). A
    /// restarted period ends after `now` (periods are positive), so it is not met again.
    /// `drop_pending` is the planted bug `LastThrottledEventDropped`.
    pub(crate) fn fire_due(&mut self, now: Instant, drop_pending: bool) -> Vec<Fired> {
        let mut fired = Vec::new();
        // Bounded: each pass removes one due entry; re-armed entries are not due.
        while self.deadlines.first().is_some_and(|(d, _)| *d <= now) {
            let Some((_, key)) = self.deadlines.pop_first() else {
                break;
            };
            let Some(state) = self.states.get_mut(&key) else {
                continue;
            };
            let dropped = drop_pending && state.pending.take().is_some();
            match state.pending.take() {
                Some(ev) => {
                    state.deadline = now.plus_nanos(state.period_ns);
                    self.deadlines.insert((state.deadline, key));
                    fired.push(Fired::Send(ev));
                }
                None if dropped => {
                    // Planted bug: the pending event is lost, the period restarts empty.
                    state.deadline = now.plus_nanos(state.period_ns);
                    self.deadlines.insert((state.deadline, key));
                }
                None => {
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
                let key_heap = n.capacity() + k.as_ref().map_or(0, |k| k.heap_bytes());
                std::mem::size_of::<(Key, State)>()
                    + std::mem::size_of::<(Instant, Key)>()
                    + 2 * key_heap
                    + s.pending
                        .as_ref()
                        .map_or(0, |e| e.name.capacity() + 64 * e.data.len())
            })
            .sum()
    }
}
