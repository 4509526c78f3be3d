//! QEMU 7.2's JSON dialect: lexer, streamer, parser and writer, byte for byte.
//!
//! This is hand-written rather than built on serde_json because QMP's wire behaviour depends on
//! details no general JSON library reproduces: single-quoted strings, the lookahead rule for
//! numbers and keywords, error tokens and the recovery state, two independent brace/bracket
//! counters, QEMU's limits and error texts, modified UTF-8, three number kinds and `%.17g`
//! output, and hash-bucket member order. See `shared/spec/QMP-BEHAVIOR.md` §1.

pub mod value;

pub use value::{JsonString, Object, Value};
