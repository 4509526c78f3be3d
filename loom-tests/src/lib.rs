//! loom models of qmp-io (under construction).
