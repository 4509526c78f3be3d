//! Events: throttling on the passed-in clock, then broadcast to every negotiated monitor,
//! serialised once per pretty setting (spec §8). Also the core's own `COMMAND_DROPPED` (2.12).

use super::digest::Digest;
use super::throttle::{Event, Fired, Verdict};
use super::types::{DisconnectReason, Output, Timestamp};
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
        let limit = self.config.output_limit;
        // Serialised at most once per pretty setting.
        let mut texts: [Option<(Vec<u8>, Digest)>; 2] = [None, None];
        let mut skipped = false;
        let mut over_limit = Vec::new();
        for i in 0..self.monitors.len() {
            let m = self.monitors.at_mut(i);
            if !m.live() {
                continue;
            }
            let hmp_too = m.hmp.is_some() && planted!(self, HmpGetsEvents);
            if !m.negotiated && !all && !hmp_too {
                skipped = true;
                continue;
            }
            let pretty = m.options.pretty;
            let (bytes, hash) = texts[usize::from(pretty)].get_or_insert_with(|| {
                let mut b = Vec::with_capacity(128);
                crate::json::write_message(&v, pretty, &mut b);
                let mut h = Digest::default();
                h.bytes(&b);
                (b, h)
            });
            m.out.buf.extend_from_slice(bytes);
            self.digest.word(1);
            self.digest.word(m.id.0);
            self.digest.word(hash.0);
            if m.out.len() > limit {
                over_limit.push(m.id);
            } else if !m.transmit_queued {
                m.transmit_queued = true;
                self.outputs.push_back(Output::Transmit(m.id));
            }
        }
        if skipped {
            self.probes.event_skipped_unnegotiated += 1;
        }
        for id in over_limit {
            self.probes.output_limit_disconnect += 1;
            self.give_up(id, DisconnectReason::OutputLimit { limit });
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
        let total = base
            .microseconds
            .saturating_add((micros % 1_000_000) as i64);
        Timestamp {
            seconds: base
                .seconds
                .saturating_add((micros / 1_000_000) as i64)
                .saturating_add(total / 1_000_000),
            microseconds: total % 1_000_000,
        }
    }
}
