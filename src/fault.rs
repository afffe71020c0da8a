//! Fault injection for the crash tests. **Test-only**: nothing here does
//! anything unless the environment variable [`ABORT_AFTER_VAR`] is set.
//!
//! `GWSTEER_TEST_ABORT_AFTER=<k>` (k ≥ 1) kills the process with SIGKILL —
//! exactly `kill -9`: no destructors, no unwinding, no flush, the store lock
//! released by the kernel — right after its k-th *state change*. A state
//! change is every kernel change (each `ensure`, `remove` or imposter
//! removal through the kernel layer's `System`, whether or not the kernel
//! actually had anything to do) and every state store write (record, group
//! and hold writes and deletes, setting a record aside, destroying a
//! network's state). Those two choke points call [`state_changed`], so a
//! test can stop a verb between any two of its steps and prove that a
//! retried ADD, a DEL or a GC converges from there (tests/it/crash.rs).
//!
//! The variable is read once per process; unset, empty, `0` or not a number
//! means "never".

use std::fmt::Display;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms the fault hook (tests only).
pub const ABORT_AFTER_VAR: &str = "GWSTEER_TEST_ABORT_AFTER";

static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
static CHANGES: AtomicU64 = AtomicU64::new(0);

fn limit() -> Option<u64> {
    *LIMIT.get_or_init(|| {
        std::env::var(ABORT_AFTER_VAR)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|k| *k > 0)
    })
}

/// Count one state change (`what` is only formatted when the hook fires).
pub fn state_changed(what: &dyn Display) {
    let Some(limit) = limit() else {
        return;
    };
    let n = CHANGES.fetch_add(1, Ordering::SeqCst) + 1;
    if n >= limit {
        eprintln!("gwsteer: {ABORT_AFTER_VAR}={limit}: killed after state change {n}: {what}");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
        std::process::abort();
    }
}
