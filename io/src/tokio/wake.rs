//! Wakers that say which source became ready: a readiness event for one listener must reach
//! the driver as a fact about that listener, while every event wakes the one loop task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

/// The loop task's waker, kept up to date by the loop at every turn.
#[derive(Default)]
pub(crate) struct TaskWaker(Mutex<Option<Waker>>);

impl TaskWaker {
    /// Keep `waker` (the loop's current one).
    pub(crate) fn register(&self, waker: &Waker) {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !w.as_ref().is_some_and(|old| old.will_wake(waker)) {
            *w = Some(waker.clone());
        }
    }

    fn wake(&self) {
        let w = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// A waker for one source: waking it sets the flag, then wakes the loop task.
pub(crate) struct ReadyFlag {
    ready: AtomicBool,
    pub(crate) task: TaskWaker,
}

impl Default for ReadyFlag {
    /// Set at first: a source may be ready before anyone registered for it.
    fn default() -> Self {
        ReadyFlag {
            ready: AtomicBool::new(true),
            task: TaskWaker::default(),
        }
    }
}

impl ReadyFlag {
    /// Whether the source was woken since the last look (clears the flag).
    pub(crate) fn take(&self) -> bool {
        self.ready.swap(false, Ordering::AcqRel)
    }
}

impl Wake for ReadyFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.store(true, Ordering::Release);
        self.task.wake();
    }
}
