//! Failure classes and their exit codes (crash 127, liveness 128, correctness 129).

use std::fmt;

/// What kind of failure a run found.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureClass {
    /// The core panicked.
    Crash,
    /// The system did not converge once faults were switched off.
    Liveness,
    /// An oracle saw wrong behaviour.
    Correctness,
}

impl FailureClass {
    /// The process exit code for this class.
    pub fn exit_code(self) -> i32 {
        match self {
            FailureClass::Crash => 127,
            FailureClass::Liveness => 128,
            FailureClass::Correctness => 129,
        }
    }
}

/// A failed check, with enough context to read it without a debugger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Class (and exit code).
    pub class: FailureClass,
    /// Which oracle fired (stable short name, used by shrinking to recognise "still fails").
    pub oracle: &'static str,
    /// What it saw.
    pub detail: String,
    /// Number of inputs applied before it fired.
    pub step: u64,
    /// Virtual time, nanoseconds.
    pub now: u64,
}

impl Failure {
    /// A correctness failure.
    pub fn correctness(oracle: &'static str, detail: impl Into<String>) -> Failure {
        Failure {
            class: FailureClass::Correctness,
            oracle,
            detail: detail.into(),
            step: 0,
            now: 0,
        }
    }

    /// A liveness failure.
    pub fn liveness(oracle: &'static str, detail: impl Into<String>) -> Failure {
        Failure {
            class: FailureClass::Liveness,
            oracle,
            detail: detail.into(),
            step: 0,
            now: 0,
        }
    }

    /// A panic inside the core.
    pub fn crash(detail: impl Into<String>) -> Failure {
        Failure {
            class: FailureClass::Crash,
            oracle: "panic",
            detail: detail.into(),
            step: 0,
            now: 0,
        }
    }

    /// Stamps where it happened.
    pub fn at(mut self, step: u64, now: u64) -> Failure {
        self.step = step;
        self.now = now;
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} failure [{}] at input {} (t={} ns): {}",
            self.class, self.oracle, self.step, self.now, self.detail
        )
    }
}

/// Text of a caught panic payload.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
