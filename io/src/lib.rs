//! qmp-io: sockets and threads around qmp-core (under construction).
