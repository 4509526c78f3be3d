//! CPU time consumed by the server process (all its threads), from
//! `/proc/PID/task/*/schedstat` (nanoseconds on the CPU). On a loaded 2-core machine the
//! wall-clock figures carry everyone else's work; the server's own CPU time per operation
//! does not, so it is reported next to them when `--pid` is given.

use std::io;

/// Threads read at most (a bound on the directory walk; QEMU and qmpd have a handful).
const MAX_THREADS: usize = 4096;

/// Total on-CPU time of every thread of `pid`, in nanoseconds.
pub fn cpu_ns(pid: u32) -> io::Result<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))?.take(MAX_THREADS) {
        let path = entry?.path().join("schedstat");
        // A thread may exit between the listing and the read.
        if let Ok(s) = std::fs::read_to_string(path) {
            total += parse_schedstat(&s).unwrap_or(0);
        }
    }
    Ok(total)
}

fn parse_schedstat(s: &str) -> Option<u64> {
    s.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_first_field_is_on_cpu_ns() {
        assert_eq!(parse_schedstat("123456 789 10\n"), Some(123456));
        assert_eq!(parse_schedstat(""), None);
        let a = cpu_ns(std::process::id()).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_ns(std::process::id()).unwrap() > a);
    }
}
