//! The output digest: one 64-bit fingerprint of everything a server produced, for replay checks
//! and determinism tests.
//!
//! Definition (version 1): FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3),
//! applied to 8-byte little-endian words instead of single bytes (a byte string is mixed as its
//! length, then its bytes in words, the last word zero-padded). What is mixed, in production
//! order: every message appended to a monitor's output (tag 1, monitor id, digest of the
//! message bytes), every `Call` (tag 2, call id, monitor, lane, command, arguments mixed
//! structurally by [`Digest::value`]),
//! `CloseFd` (tag 3, fd) and `Disconnect` (tag 4, monitor, reason). `Transmit` outputs and the
//! way pending output is split into writes do not count, so any `Written` split gives the
//! same digest.

use serde::{Deserialize, Serialize};

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// A running FNV-1a-64 (word-wise) fingerprint.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest(pub u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(OFFSET)
    }
}

impl Digest {
    /// Mix one word.
    #[inline]
    pub fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(PRIME);
    }

    /// Mix a byte string (its length, then its bytes).
    #[inline]
    pub fn bytes(&mut self, b: &[u8]) {
        self.word(b.len() as u64);
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(w));
        }
    }

    /// The digest as 16 lower-case hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

impl Digest {
    /// Mix a JSON value structurally (kind tags, insertion order of members).
    pub fn value(&mut self, v: &crate::json::Value) {
        use crate::json::Value;
        match v {
            Value::Null => self.word(0x10),
            Value::Bool(b) => self.word(0x20 | u64::from(*b)),
            Value::Int(i) => {
                self.word(0x30);
                self.word(*i as u64);
            }
            Value::UInt(u) => {
                self.word(0x40);
                self.word(*u);
            }
            Value::Double(d) => {
                self.word(0x50);
                self.word(d.to_bits());
            }
            Value::String(s) => {
                self.word(0x60);
                self.bytes(s.as_bytes());
            }
            Value::Array(a) => {
                self.word(0x70);
                self.word(a.len() as u64);
                for x in a {
                    self.value(x);
                }
            }
            Value::Object(o) => {
                self.word(0x80);
                self.word(o.len() as u64);
                for (k, x) in o.iter() {
                    self.bytes(k.as_bytes());
                    self.value(x);
                }
            }
        }
    }
}
