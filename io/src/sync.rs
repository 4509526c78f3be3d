//! The synchronisation primitives the shim is built from, behind one facade.
//!
//! Normally these are the `std` types; under `cfg(loom)` they are loom's, so `loom-tests/` can
//! model the real locking and wake-up code of [`crate::shared`] and [`crate::dispatcher`] (the same source, not a copy).
//! Only the primitives the shim actually uses are re-exported; code in this crate must import
//! them from here, never from `std::sync` directly.
//!
//! [`spin_until`] is the one busy-wait of the shim (see `shared`'s "Spinning" docs): bounded by
//! time normally, by a number of turns under loom (which has no clock).

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub use std::sync::TryLockError;

#[cfg(not(loom))]
pub use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};

/// Lock `m`, ignoring poisoning.
///
/// A handler panic never happens under our locks (handlers run unlocked and are caught with
/// `catch_unwind`), so a poisoned lock can only come from a bug in the shim itself; carrying on
/// with the state as it is beats taking the whole daemon down on every later call.
///
/// A lock held by another thread is waited for by spinning for up to `tuning::LOCK_SPIN`
/// before blocking: critical sections are a few microseconds (one input applied, one
/// non-blocking write), and a blocked waiter costs a futex sleep and wake-up (an IPI to a
/// halted virtual CPU) on both sides. The spin first keeps the CPU
/// (`tuning::LOCK_PAUSES` turns of `spin_loop`), then gives it away each turn.
#[cfg(not(loom))]
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    use crate::tuning::{LOCK_PAUSES, LOCK_SPIN};
    for _ in 0..LOCK_PAUSES {
        if let Some(g) = try_lock(m) {
            return g;
        }
        std::hint::spin_loop();
    }
    let mut guard = None;
    spin_until(LOCK_SPIN, || {
        guard = try_lock(m);
        guard.is_some()
    });
    guard.unwrap_or_else(|| match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    })
}

/// One attempt at `m`, ignoring poisoning (see [`lock`]).
#[cfg(not(loom))]
fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Under loom: one `try_lock` before blocking (the spin's turns are yield points that only
/// multiply the schedules of every model; a failed attempt followed by a blocking lock is the
/// same protocol).
#[cfg(loom)]
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.try_lock() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => match m.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        },
    }
}

/// Wait on `cv`, ignoring poisoning (see [`lock`]).
pub fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    match cv.wait(guard) {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// How one turn of a spin gives the CPU away: `sched_yield`, so that on a machine with fewer
/// cores than runnable threads (2 here: client, IO thread, dispatcher) a spinning thread lets
/// the others run instead of holding its core for the whole spin.
#[cfg(not(loom))]
pub fn spin_yield() {
    std::thread::yield_now();
}

/// Under loom: a yield point, so the model explores other threads between turns.
#[cfg(loom)]
pub fn spin_yield() {
    loom::thread::yield_now();
}

/// Turns of a spin under loom (each a yield point): enough to see a hint set by another thread
/// during the spin and to see it missed; more only multiplies the schedules.
#[cfg(loom)]
pub const LOOM_SPIN_TURNS: usize = 2;

/// Busy-wait until `found()` says there is work (true) or `bound` has passed (false), giving
/// the CPU away each turn. `found` checks hints, which are only ever early notices: whoever
/// spins must still look at the locked state afterwards, so a missed or stale hint costs time,
/// never correctness.
#[cfg(not(loom))]
pub fn spin_until(bound: std::time::Duration, mut found: impl FnMut() -> bool) -> bool {
    // The first look costs no clock reading: most locks are free at once.
    if found() {
        return true;
    }
    let start = std::time::Instant::now();
    loop {
        if start.elapsed() >= bound {
            return false;
        }
        spin_yield();
        if found() {
            return true;
        }
    }
}

/// Under loom: [`LOOM_SPIN_TURNS`] turns instead of a time bound.
#[cfg(loom)]
pub fn spin_until(_bound: std::time::Duration, mut found: impl FnMut() -> bool) -> bool {
    for _ in 0..LOOM_SPIN_TURNS {
        if found() {
            return true;
        }
        spin_yield();
    }
    false
}
