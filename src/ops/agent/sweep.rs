//! The sweep: records whose pod namespace is gone without a DEL (a lost
//! DEL; containerd never sends GC) are removed as GC removes them, once
//! the namespace has been seen missing for the grace period.
//!
//! "First seen missing" is kept in memory only: an agent that restarts
//! starts every clock again, so a record is swept at the earliest one grace
//! period after the agent that sweeps it first saw its namespace gone. A
//! namespace that comes back (the path names a namespace again) stops the
//! clock. A record whose namespace exists is never touched; a record
//! without a namespace path is never swept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::{self, LOCK_WAIT};
use crate::error::Result;
use crate::kernel::netns::netns_alive;
use crate::store::{self, Store};

/// (network, attachment stem).
type Key = (String, String);

/// What the sweep does with one record.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The namespace exists, or the record names none.
    Keep,
    /// Missing, first seen at this instant; not for long enough yet.
    Wait(Instant),
    /// Missing for at least the grace period (since this instant).
    Sweep(Instant),
}

/// How long a record that could not be swept waits for the next try.
pub const RETRY: Duration = Duration::from_secs(10);

/// One record's clock: first seen missing, and when it is due.
#[derive(Debug, Clone, Copy)]
struct Clock {
    since: Instant,
    due: Instant,
}

/// The clocks of records seen without their namespace.
pub struct Sweeper {
    grace: Duration,
    missing: BTreeMap<Key, Clock>,
    /// After a pass that failed as a whole: not before this.
    not_before: Option<Instant>,
}

impl Sweeper {
    pub fn new(grace: Duration) -> Sweeper {
        Sweeper {
            grace,
            missing: BTreeMap::new(),
            not_before: None,
        }
    }

    /// Judges one record: `netns` its path (none: never swept), `alive`
    /// whether that path names a namespace now.
    pub fn judge(&mut self, key: Key, netns: Option<&Path>, alive: bool, now: Instant) -> Verdict {
        if netns.is_none() || alive {
            self.missing.remove(&key);
            return Verdict::Keep;
        }
        let grace = self.grace;
        let clock = *self.missing.entry(key).or_insert(Clock {
            since: now,
            due: now + grace,
        });
        if now >= clock.due {
            Verdict::Sweep(clock.since)
        } else {
            Verdict::Wait(clock.since)
        }
    }

    /// A record that could not be swept is tried again after [`RETRY`].
    fn retry_later(&mut self, key: &Key, now: Instant) {
        if let Some(c) = self.missing.get_mut(key) {
            c.due = now + RETRY;
        }
    }

    /// Forgets records that are no longer in `seen` (removed by DEL, GC, or
    /// this sweep).
    fn forget_except(&mut self, seen: &[Key]) {
        self.missing.retain(|k, _| seen.contains(k));
    }

    /// When the next record would be due, if any is waiting.
    pub fn next_due(&self) -> Option<Instant> {
        let due = self.missing.values().map(|c| c.due).min()?;
        Some(self.not_before.map_or(due, |n| due.max(n)))
    }

    /// One pass over every network under `state_dir`, each under its lock
    /// (taken after waiting ADDs, and held only for the pass over that
    /// network). Returns one line per record swept, newly seen missing, or
    /// that could not be swept; also logged.
    pub fn scan(&mut self, state_dir: &Path, now: Instant) -> Result<Vec<String>> {
        let outcome = self.pass(state_dir, now);
        self.not_before = outcome.is_err().then_some(now + RETRY);
        outcome
    }

    fn pass(&mut self, state_dir: &Path, now: Instant) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        let mut seen = Vec::new();
        for name in store::networks(state_dir)? {
            let store = Store::open(state_dir, &name, LOCK_WAIT)?;
            let (records, _corrupt) = store.list()?;
            let mut kernel = None;
            for record in records {
                let key = (name.clone(), record.id.stem());
                let netns = record.netns.as_ref().map(PathBuf::from);
                let alive = netns.as_deref().is_some_and(netns_alive);
                match self.judge(key.clone(), netns.as_deref(), alive, now) {
                    Verdict::Keep => continue,
                    Verdict::Wait(since) => {
                        seen.push(key);
                        if since == now {
                            let line = format!(
                                "{name}: attachment {} has lost its network namespace {}; swept in {} s unless it comes back",
                                record.id,
                                netns.as_deref().unwrap_or(Path::new("")).display(),
                                self.grace.as_secs_f64()
                            );
                            log::info!("{line}");
                            lines.push(line);
                        }
                    }
                    Verdict::Sweep(since) => {
                        let gone = now.duration_since(since).as_secs_f64();
                        match engine::teardown_stored(&store, &mut kernel, &record)
                            .and_then(|()| store.delete(&record.id))
                        {
                            Ok(()) => {
                                let line = format!(
                                    "swept {name}: attachment {} (network namespace {} gone for {gone:.1} s, no DEL came)",
                                    record.id,
                                    netns.as_deref().unwrap_or(Path::new("")).display()
                                );
                                log::info!("{line}");
                                lines.push(line);
                                self.missing.remove(&key);
                            }
                            Err(e) => {
                                self.retry_later(&key, now);
                                seen.push(key);
                                let line = format!(
                                    "cannot sweep {name}: attachment {}: {e}; tried again next round",
                                    record.id
                                );
                                log::error!("{line}");
                                lines.push(line);
                            }
                        }
                    }
                }
            }
        }
        self.forget_except(&seen);
        Ok(lines)
    }
}
