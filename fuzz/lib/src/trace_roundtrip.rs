//! placeholder

/// placeholder
pub fn run(_data: &[u8]) {}
