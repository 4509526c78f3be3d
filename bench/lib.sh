# Shared by bench/run.sh and bench/ab.sh (sourced): a scratch directory for sockets, the servers
# started in it, and their teardown.
#
# After sourcing: WORK is a fresh directory (removed at exit), PIDS the started processes
# (killed at exit; append to it), wait_socket PATH waits for a server's socket.

# Bound on waiting for a server's socket to appear (tenths of a second).
SOCKET_WAIT_TENTHS=300

WORK=$(mktemp -d /tmp/qmp-bench.XXXXXX)
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# wait_socket PATH: until a server has bound PATH (at most SOCKET_WAIT_TENTHS tenths of a second).
wait_socket() {
    local i
    for ((i = 0; i < SOCKET_WAIT_TENTHS; i++)); do
        [ -S "$1" ] && return 0
        sleep 0.1
    done
    echo "bench: $1 did not appear" >&2
    return 1
}
