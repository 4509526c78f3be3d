//! qmp-bench (under construction).
