//! Events: throttling on the passed-in clock, then broadcast to every negotiated monitor,
//! serialised once per pretty setting (spec §8). Also the core's own `COMMAND_DROPPED` (2.12).

use super::digest::Digest;
use super::throttle::{Event, Fired, Verdict};
use super::types::Timestamp;
use super::Server;
use crate::json::{Object, Value};

impl Server {
    pub(super) fn event(&mut self, ev: Event) {
        match self.throttle.offer(self.now, ev) {
            Verdict::Send(ev) => self.broadcast(&ev),
            Verdict::Held { replaced } => {
                self.probes.throttle_delayed += 1;
                if replaced {
                    self.probes.throttle_replaced += 1;
                }
            }
        }
    }

    /// End due throttle periods (runs at the start of every input).
    pub(super) fn fire_timers(&mut self) {
        if self.throttle.next_deadline().is_none_or(|d| d > self.now) {
            return;
        }
        let drop = planted!(self, LastThrottledEventDropped);
        for f in self.throttle.fire_due(self.now, drop) {
            match f {
                Fired::Send(ev) => {
                    self.probes.throttle_fired += 1;
                    self.broadcast(&ev);
                }
                Fired::Freed => self.probes.throttle_state_freed += 1,
            }
        }
    }

    /// Send an event to every monitor in command mode, by monitor id.
    pub(super) fn broadcast(&mut self, ev: &Event) {
        let mut ts = Object::with_capacity(2);
        ts.insert("seconds", Value::Int(ev.timestamp.seconds));
        ts.insert("microseconds", Value::Int(ev.timestamp.microseconds));
        let mut o = Object::with_capacity(3);
        o.insert("timestamp", Value::Object(ts));
        o.insert("event", Value::string(ev.name.as_str()));
        if !ev.data.is_empty() {
            o.insert("data", Value::Object(ev.data.clone()));
        }
        let v = Value::Object(o);
        let all = planted!(self, EventBeforeNegotiation);
        let mut compact: Option<(Vec<u8>, Digest)> = None;
        let mut pretty: Option<(Vec<u8>, Digest)> = None;
        let targets: Vec<(crate::server::MonitorId, bool)> = self
            .monitors
            .values()
            .filter(|m| !m.dead)
            .filter_map(|m| {
                if m.negotiated || all {
                    Some((m.id, m.options.pretty))
                } else {
                    None
                }
            })
            .collect();
        let skipped = self.monitors.values().filter(|m| !m.negotiated).count();
        if skipped > 0 && !all {
            self.probes.event_skipped_unnegotiated += 1;
        }
        for (id, is_pretty) in targets {
            let slot = if is_pretty { &mut pretty } else { &mut compact };
            let (bytes, hash) = slot.get_or_insert_with(|| {
                let mut b = Vec::with_capacity(128);
                crate::json::write_message(&v, is_pretty, &mut b);
                let mut h = Digest::default();
                h.bytes(&b);
                (b, h)
            });
            let (bytes, hash) = (std::mem::take(bytes), *hash);
            self.append_bytes(id, &bytes, hash);
            let slot = if is_pretty { &mut pretty } else { &mut compact };
            if let Some(s) = slot.as_mut() {
                s.0 = bytes;
            }
        }
    }

    /// 2.12: a request was dropped because the queue was full.
    pub(super) fn command_dropped(&mut self, id: Option<Value>) {
        let mut data = Object::with_capacity(2);
        data.insert("reason", Value::string("queue-full"));
        if !planted!(self, CommandDroppedWithoutId) {
            data.insert("id", id.unwrap_or(Value::Null));
        }
        let ev = Event {
            name: "COMMAND_DROPPED".to_owned(),
            data,
            timestamp: self.wall_clock(),
        };
        self.event(ev);
    }

    /// `Config::wall_clock_base` + now, for events the core makes itself.
    fn wall_clock(&self) -> Timestamp {
        let base = self.config.wall_clock_base;
        let micros = self.now.0 / 1000;
        let total = base.microseconds.saturating_add((micros % 1_000_000) as i64);
        Timestamp {
            seconds: base
                .seconds
                .saturating_add((micros / 1_000_000) as i64)
                .saturating_add(total / 1_000_000),
            microseconds: total % 1_000_000,
        }
    }
}
