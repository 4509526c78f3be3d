//! qmp-core: a sans-IO QEMU Monitor Protocol server core.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod json;
pub mod server;
