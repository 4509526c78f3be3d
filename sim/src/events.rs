//! The event side of the reference model: QEMU's throttle (spec §8.3), written from the spec,
//! and the exact bytes of an event on a monitor.
//!
//! The model decides which events every negotiated monitor must receive and in which order;
//! the server's own throttle is never consulted.

use std::collections::BTreeMap;

use qmp_core::server::Dialect;

use crate::wire::{server_message, J};

/// Throttle period of every rate-limited event in QEMU 7.2 (1 s).
pub const THROTTLE_PERIOD_NS: u64 = 1_000_000_000;

/// An event as the world produced it.
#[derive(Clone, Debug, PartialEq)]
pub struct SimEvent {
    /// Event name.
    pub name: String,
    /// Data members; empty means no `"data"` member on the wire.
    pub data: Vec<(String, J)>,
    /// Wall-clock seconds.
    pub seconds: i64,
    /// Wall-clock microseconds.
    pub micros: i64,
}

impl SimEvent {
    /// The exact bytes a monitor receives for this event.
    pub fn bytes(&self, pretty: bool) -> Vec<u8> {
        let mut members = vec![
            (
                "timestamp".to_string(),
                J::obj(vec![
                    ("seconds", J::Int(self.seconds)),
                    ("microseconds", J::Int(self.micros)),
                ]),
            ),
            ("event".to_string(), J::Str(self.name.clone())),
        ];
        if !self.data.is_empty() {
            members.push(("data".to_string(), J::Obj(self.data.clone())));
        }
        server_message(&J::Obj(members), pretty)
    }
}

/// The throttling key of an event (spec §8.3 table; QEMU 2.12's has no
/// `MEMORY_DEVICE_SIZE_CHANGE`, which came in 5.1), or `None` when it is not rate-limited.
pub fn throttle_key(ev: &SimEvent, dialect: Dialect) -> Option<String> {
    let member = |name: &str| {
        ev.data
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| format!("{v:?}"))
            .unwrap_or_default()
    };
    match ev.name.as_str() {
        "RTC_CHANGE" | "WATCHDOG" | "BALLOON_CHANGE" | "QUORUM_FAILURE" => Some(ev.name.clone()),
        "QUORUM_REPORT_BAD" => Some(format!("{}/{}", ev.name, member("node-name"))),
        "VSERPORT_CHANGE" => Some(format!("{}/{}", ev.name, member("id"))),
        "MEMORY_DEVICE_SIZE_CHANGE" if dialect == Dialect::Qemu72 => {
            Some(format!("{}/{}", ev.name, member("qom-path")))
        }
        _ => None,
    }
}

#[derive(Debug)]
struct KeyState {
    pending: Option<SimEvent>,
    deadline: u64,
}

/// QEMU's throttle, one state per key, global across monitors.
#[derive(Debug, Default)]
pub struct ThrottleModel {
    states: BTreeMap<String, KeyState>,
    /// Whose table (default 7.2's).
    dialect: Dialect,
}

impl ThrottleModel {
    /// The throttle of `dialect`'s table.
    pub fn new(dialect: Dialect) -> ThrottleModel {
        ThrottleModel {
            states: BTreeMap::new(),
            dialect,
        }
    }

    /// Fires every period that has ended by `now`; returns what must be broadcast, in order.
    pub fn expire(&mut self, now: u64, out: &mut Vec<SimEvent>) {
        loop {
            let due = self
                .states
                .iter()
                .filter(|(_, s)| s.deadline <= now)
                .min_by_key(|(_, s)| s.deadline)
                .map(|(k, _)| k.clone());
            let Some(key) = due else { return };
            let Some(state) = self.states.get_mut(&key) else {
                return;
            };
            match state.pending.take() {
                Some(ev) => {
                    out.push(ev);
                    state.deadline += THROTTLE_PERIOD_NS;
                }
                None => {
                    self.states.remove(&key);
                }
            }
        }
    }

    /// An event arrives at `now` (after [`ThrottleModel::expire`]); returns it if it goes out at
    /// once.
    pub fn on_event(&mut self, now: u64, ev: SimEvent) -> Option<SimEvent> {
        let Some(key) = throttle_key(&ev, self.dialect) else {
            return Some(ev);
        };
        match self.states.get_mut(&key) {
            Some(state) => {
                state.pending = Some(ev);
                None
            }
            None => {
                self.states.insert(
                    key,
                    KeyState {
                        pending: None,
                        deadline: now + THROTTLE_PERIOD_NS,
                    },
                );
                Some(ev)
            }
        }
    }

    /// The earliest deadline of a period that still holds an event to deliver.
    pub fn next_delivery(&self) -> Option<u64> {
        self.states
            .values()
            .filter(|s| s.pending.is_some())
            .map(|s| s.deadline)
            .min()
    }

    /// The earliest deadline of any running period.
    pub fn next_deadline(&self) -> Option<u64> {
        self.states.values().map(|s| s.deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, n: i64) -> SimEvent {
        SimEvent {
            name: name.into(),
            data: vec![("offset".into(), J::Int(n))],
            seconds: 1,
            micros: n,
        }
    }

    #[test]
    fn first_goes_out_last_is_kept_state_freed_after_quiet_period() {
        let mut t = ThrottleModel::default();
        let mut out = Vec::new();
        assert!(t.on_event(0, ev("RTC_CHANGE", 1)).is_some());
        assert!(t.on_event(10, ev("RTC_CHANGE", 2)).is_none());
        assert!(t.on_event(20, ev("RTC_CHANGE", 3)).is_none());
        t.expire(THROTTLE_PERIOD_NS - 1, &mut out);
        assert!(out.is_empty());
        t.expire(THROTTLE_PERIOD_NS, &mut out);
        assert_eq!(out, vec![ev("RTC_CHANGE", 3)]);
        out.clear();
        t.expire(2 * THROTTLE_PERIOD_NS, &mut out);
        assert!(out.is_empty());
        assert_eq!(t.next_deadline(), None);
        assert!(t
            .on_event(2 * THROTTLE_PERIOD_NS, ev("RTC_CHANGE", 4))
            .is_some());
        assert!(t.on_event(5, ev("STOP", 4)).is_some());
    }

    #[test]
    fn memory_device_size_change_is_throttled_by_72_only() {
        let mem = |n| SimEvent {
            name: "MEMORY_DEVICE_SIZE_CHANGE".into(),
            data: vec![("qom-path".into(), J::s("/machine/peripheral/m"))],
            seconds: 1,
            micros: n,
        };
        let mut t = ThrottleModel::new(Dialect::Qemu72);
        assert!(t.on_event(0, mem(1)).is_some());
        assert!(t.on_event(10, mem(2)).is_none());
        let mut t = ThrottleModel::new(Dialect::Qemu212);
        assert!(t.on_event(0, mem(1)).is_some());
        assert!(t.on_event(10, mem(2)).is_some());
    }

    #[test]
    fn event_bytes_leave_out_empty_data() {
        let e = SimEvent {
            name: "STOP".into(),
            data: vec![],
            seconds: 1795610467,
            micros: 629642,
        };
        assert_eq!(
            e.bytes(false),
            b"{\"timestamp\": {\"seconds\": 1795610467, \"microseconds\": 629642}, \"event\": \"STOP\"}\r\n"
        );
    }
}
