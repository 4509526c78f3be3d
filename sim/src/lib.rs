//! qmp-sim: deterministic simulation of qmp-core (under construction).
