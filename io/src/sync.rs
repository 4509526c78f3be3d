//! The synchronisation primitives the shim is built from, behind one facade.
//!
//! Normally these are the `std` types; under `cfg(loom)` they are loom's, so `loom-tests/` can
//! model the real locking and wake-up code of [`crate::shared`] (the same source, not a copy).
//! Only the primitives the shim actually uses are re-exported; code in this crate must import
//! them from here, never from `std::sync` directly.

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub use loom::sync::{Arc, Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Lock `m`, ignoring poisoning.
///
/// A handler panic never happens under our locks (handlers run unlocked and are caught with
/// `catch_unwind`), so a poisoned lock can only come from a bug in the shim itself; carrying on
/// with the state as it is beats taking the whole daemon down on every later call.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Wait on `cv`, ignoring poisoning (see [`lock`]).
pub fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    match cv.wait(guard) {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}
