//! `gwsteer agent`: the node agent (a DaemonSet's main process). One
//! thread, one `poll`, no busy loop:
//!
//! - **Repairs on kernel events.** It listens to rtnetlink rule, route,
//!   link and address notifications and to nf_tables changes
//!   ([`crate::kernel::watch`]); a notification that could concern gwsteer
//!   (one of its rules or routes deleted, a route or rule added where an
//!   imposter could sit, a link deleted or set down, any nftables change)
//!   starts a reconcile round ([`crate::ops::reconcile::round`]) once the
//!   burst is over ([`QUIET`] without another, at most [`MAX_DELAY`] after
//!   the first), which logs every repair.
//! - **The full round** every `--interval` (60 s) stays as the safety net
//!   (sysctls and pod-side objects send no notification to the node).
//! - **Sweeps** records whose network namespace has been gone for
//!   `--sweep-grace` ([`sweep`]).
//! - **Adopts** attachments the runtime's libcni cache lists and gwsteer
//!   never saw, unless `--no-adopt` ([`adopt`]): at start, every full
//!   round, and [`chain::SETTLE`] after the runtime writes a cache entry
//!   (inotify on the cache dir, when it exists at start).
//! - **Keeps the chain** with `--plugin FILE` ([`chain`]): when the primary
//!   rewrites its conflist without gwsteer, the entry is back within
//!   [`chain::SETTLE`] of its last write.
//!
//! State locks are held only inside a round (every network's, as
//! `reconcile` takes them, after waiting ADDs) or a sweep pass (one
//! network's at a time); never while idle. Each round's hold is logged.
//! Rounds are idempotent: a kill -9 at any point and a restart redo at most
//! what was not done. SIGTERM and SIGINT (a signalfd) stop it between two
//! rounds, exit 0.
//!
//! A repair makes notifications of its own: gwsteer's own rules and routes
//! are ignored, nftables ones start one more round, which finds nothing.
//! Should someone undo every repair at once (two agents fighting over a
//! table), rounds that keep finding work back off up to [`MAX_BACKOFF`].

pub mod adopt;
pub mod chain;
pub mod sweep;
#[cfg(test)]
mod tests;

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::engine;
use crate::error::{Error, Result};
use crate::kernel::watch::{Drained, Watch};

/// A burst of notifications is over after this long without another.
pub const QUIET: Duration = Duration::from_millis(2);
/// A round starts at most this long after the first notification of a
/// burst, however long the burst.
pub const MAX_DELAY: Duration = Duration::from_millis(20);
/// The longest pause between rounds that keep finding work right after
/// the previous one.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What the CLI gives the agent.
#[derive(Debug, Clone)]
pub struct Options {
    pub state_dir: PathBuf,
    /// The full round's period.
    pub interval: Duration,
    /// How long a record's namespace must be gone before it is swept.
    pub sweep_grace: Duration,
    /// Adopt attachments from the libcni cache.
    pub adopt: bool,
    pub cni_cache_dir: PathBuf,
    /// Where a network's conflist is found today, for cached attachments
    /// whose own conflist does not chain gwsteer.
    pub cni_conf_dir: PathBuf,
    /// `--plugin FILE`: the plugin object to keep chained in
    /// `cni_conf_dir`; `None`, the chain is not watched.
    pub chain_plugin: Option<PathBuf>,
    /// `--heartbeat FILE`: touched after every round (full or on events),
    /// so `gwsteer agent --alive FILE` can tell a live agent from a stuck
    /// one (a liveness probe that means something).
    pub heartbeat: Option<PathBuf>,
}

/// A heartbeat older than this many full-round intervals is a stuck agent.
pub const ALIVE_INTERVALS: u32 = 3;

/// `gwsteer agent --alive FILE [--interval DUR]`: 0 when the agent touched
/// `file` within [`ALIVE_INTERVALS`] intervals, 1 (saying why) otherwise.
pub fn alive(file: &std::path::Path, interval: Duration) -> i32 {
    let limit = interval * ALIVE_INTERVALS;
    match std::fs::metadata(file).and_then(|m| m.modified()) {
        Ok(t) => match t.elapsed() {
            Ok(age) if age <= limit => 0,
            Ok(age) => {
                eprintln!(
                    "gwsteer agent: {} last touched {} s ago (more than {} s): the agent is stuck",
                    file.display(),
                    age.as_secs(),
                    limit.as_secs()
                );
                1
            }
            Err(_) => 0,
        },
        Err(e) => {
            eprintln!("gwsteer agent: {}: {e}: no agent has run", file.display());
            1
        }
    }
}

/// Touches the heartbeat file (made if missing; its content is the time).
fn beat(file: Option<&PathBuf>) {
    if let Some(path) = file {
        let now = crate::logging::timestamp(std::time::SystemTime::now());
        if let Err(e) = std::fs::write(path, format!("{now}\n")) {
            log::warn!("agent: heartbeat {}: {e}", path.display());
        }
    }
}

impl Options {
    pub fn new(state_dir: PathBuf) -> Options {
        Options {
            state_dir,
            interval: Duration::from_secs(60),
            sweep_grace: Duration::from_secs(300),
            adopt: true,
            cni_cache_dir: PathBuf::from(adopt::DEFAULT_CNI_CACHE_DIR),
            cni_conf_dir: PathBuf::from(adopt::DEFAULT_CNI_CONF_DIR),
            chain_plugin: None,
            heartbeat: None,
        }
    }
}

/// Notifications waiting for their round.
#[derive(Debug)]
pub struct Pending {
    first: Instant,
    last: Instant,
    /// Not before this (backoff).
    not_before: Instant,
    reasons: Vec<String>,
    count: usize,
    overrun: bool,
}

impl Pending {
    fn new(now: Instant, not_before: Instant) -> Pending {
        Pending {
            first: now,
            last: now,
            not_before,
            reasons: Vec::new(),
            count: 0,
            overrun: false,
        }
    }

    fn add(&mut self, d: Drained, now: Instant) {
        self.last = now;
        self.count += d.relevant_count;
        self.overrun |= d.overrun;
        for r in d.relevant {
            if self.reasons.len() < 3 && !self.reasons.contains(&r) {
                self.reasons.push(r);
            }
        }
    }

    /// When its round is due.
    pub fn due(&self) -> Instant {
        (self.last + QUIET)
            .min(self.first + MAX_DELAY)
            .max(self.not_before)
    }

    fn describe(&self) -> String {
        let mut text = self.reasons.join("; ");
        if self.count > self.reasons.len() {
            text.push_str(&format!(" (+{} more)", self.count - self.reasons.len()));
        }
        if self.overrun {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str("notifications lost (receive buffer overrun)");
        }
        text
    }
}

/// The pause before a round that follows `streak` rounds in a row that
/// each found work and left notifications behind.
pub fn backoff(streak: u32) -> Duration {
    if streak < 2 {
        return Duration::ZERO;
    }
    let ms = 10u64.saturating_mul(1 << (streak - 2).min(16));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

/// SIGTERM and SIGINT, blocked and read from a signalfd.
fn signals() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()
        .map_err(|e| Error::kernel(format!("blocking SIGTERM and SIGINT: {e}")))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::kernel(format!("signalfd: {e}")))
}

struct Agent {
    opts: Options,
    watch: Watch,
    sweeper: sweep::Sweeper,
    adopter: adopt::Adopter,
    /// Rounds in a row that found work and left notifications behind.
    streak: u32,
}

impl Agent {
    /// One reconcile round and a sweep pass; logs what triggered it, what
    /// it did and how long it held the state locks. Returns whether the
    /// round changed anything.
    fn round(&mut self, why: &str) -> bool {
        let started = Instant::now();
        let outcome = engine::new_kernel(None).and_then(|mut kernel| {
            crate::ops::reconcile::round(&self.opts.state_dir, false, kernel.as_mut())
        });
        // `round` takes every network's lock first and gives them back as it
        // returns: its duration is the longest any caller waited on it.
        let held = started.elapsed();
        let changed = match &outcome {
            Ok(r) => {
                log::info!(
                    "agent: round ({why}): {} repair(s), {} problem(s); state locks held {} µs",
                    r.changes.len(),
                    r.errors.len(),
                    held.as_micros()
                );
                !r.changes.is_empty()
            }
            Err(e) => {
                log::error!("agent: round ({why}) failed: {e}");
                false
            }
        };
        self.sweep();
        changed
    }

    fn sweep(&mut self) {
        let started = Instant::now();
        match self.sweeper.scan(&self.opts.state_dir, Instant::now()) {
            Ok(lines) if !lines.is_empty() => log::info!(
                "agent: sweep: {} line(s) in {} µs",
                lines.len(),
                started.elapsed().as_micros()
            ),
            Ok(_) => {}
            Err(e) => log::error!("agent: sweep failed: {e}"),
        }
        beat(self.opts.heartbeat.as_ref());
    }

    fn full(&mut self, why: &str) {
        self.adopt();
        self.round(why);
    }

    /// One adoption pass over the cache (unless `--no-adopt`).
    fn adopt(&mut self) {
        if self.opts.adopt {
            let lines = self
                .adopter
                .pass(&self.opts.cni_cache_dir, &self.opts.state_dir);
            if !lines.is_empty() {
                log::info!("agent: adoption: {} line(s)", lines.len());
            }
        }
    }

    /// An event round, then what its own repairs left queued.
    fn on_events(&mut self, p: Pending) -> Result<Option<Pending>> {
        let changed = self.round(&p.describe());
        let echoes = self.watch.drain()?;
        if !echoes.matters() {
            self.streak = 0;
            return Ok(None);
        }
        self.streak = if changed { self.streak + 1 } else { 0 };
        if self.streak >= 5 {
            log::warn!(
                "agent: {} rounds in a row undone at once ({}): is someone else managing these objects? next round in {} ms",
                self.streak,
                echoes.relevant.join("; "),
                backoff(self.streak).as_millis()
            );
        }
        let now = Instant::now();
        let mut next = Pending::new(now, now + backoff(self.streak));
        next.add(echoes, now);
        Ok(Some(next))
    }
}

/// Runs until SIGTERM or SIGINT; exit code 0 then.
pub fn run(opts: Options) -> Result<i32> {
    // Before any thread exists: every thread inherits the mask.
    let signals = signals()?;
    let watch = Watch::open()?;
    log::info!(
        "agent: started (state dir {}, full round every {} ms, sweep grace {} s, adoption {})",
        opts.state_dir.display(),
        opts.interval.as_millis(),
        opts.sweep_grace.as_secs_f64(),
        if opts.adopt {
            format!(
                "from {} with {}",
                opts.cni_cache_dir.display(),
                opts.cni_conf_dir.display()
            )
        } else {
            "off".into()
        }
    );
    let mut keeper = match &opts.chain_plugin {
        Some(path) => {
            let plugin = crate::ops::install::Plugin::from_file(path)?;
            let mut k = chain::Keeper::new(&opts.cni_conf_dir, plugin)?;
            log::info!(
                "agent: keeping gwsteer ({}) chained in {}",
                path.display(),
                opts.cni_conf_dir.display()
            );
            k.keep("at start");
            Some(k)
        }
        None => None,
    };
    let mut cache_watch = if opts.adopt {
        chain::DirWatch::new(&opts.cni_cache_dir)
    } else {
        None
    };
    let mut agent = Agent {
        sweeper: sweep::Sweeper::new(opts.sweep_grace),
        adopter: adopt::Adopter::new(Some(opts.cni_conf_dir.clone())),
        opts,
        watch,
        streak: 0,
    };
    // Notifications from before the first round are covered by it.
    agent.watch.drain()?;
    agent.full("start");
    let mut next_full = Instant::now() + agent.opts.interval;
    let mut pending: Option<Pending> = None;
    loop {
        let now = Instant::now();
        let mut deadline = next_full;
        if let Some(due) = agent.sweeper.next_due() {
            deadline = deadline.min(due);
        }
        if let Some(p) = &pending {
            deadline = deadline.min(p.due());
        }
        if let Some(due) = keeper.as_ref().and_then(chain::Keeper::due) {
            deadline = deadline.min(due);
        }
        if let Some(due) = cache_watch.as_ref().and_then(chain::DirWatch::due) {
            deadline = deadline.min(due);
        }
        let wait = deadline.saturating_duration_since(now);
        // Rounded up: waking early would spin until the deadline.
        let timeout = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut fds: Vec<libc::pollfd> = std::iter::once(signals.as_fd().as_raw_fd())
            .chain(keeper.as_ref().map(chain::Keeper::fd))
            .chain(cache_watch.as_ref().map(chain::DirWatch::fd))
            .chain(agent.watch.fds())
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io("poll", e));
            }
            continue;
        }
        if fds[0].revents != 0
            && let Ok(Some(info)) = signals.read_signal()
        {
            let name = Signal::try_from(info.ssi_signo as i32)
                .map(|s| s.as_str())
                .unwrap_or("a signal");
            log::info!("agent: {name} received, stopping");
            return Ok(0);
        }
        let cache_at = 1 + usize::from(keeper.is_some());
        let watch_from = cache_at + usize::from(cache_watch.is_some());
        if let Some(k) = keeper.as_mut()
            && fds[1].revents != 0
        {
            k.drain(Instant::now());
        }
        if let Some(w) = cache_watch.as_mut()
            && fds[cache_at].revents != 0
        {
            w.drain(Instant::now());
        }
        if let Some(w) = cache_watch.as_mut()
            && w.due().is_some_and(|due| due <= Instant::now())
        {
            w.done();
            agent.adopt();
        }
        if let Some(k) = keeper.as_mut()
            && k.due().is_some_and(|due| due <= Instant::now())
        {
            k.keep("the conf dir changed");
        }
        if fds[watch_from..].iter().any(|f| f.revents != 0) {
            let d = agent.watch.drain()?;
            if d.matters() {
                let now = Instant::now();
                pending
                    .get_or_insert_with(|| Pending::new(now, now))
                    .add(d, now);
            }
        }
        let now = Instant::now();
        if now >= next_full {
            // The full round covers pending notifications too.
            pending = None;
            agent.full("every interval");
            next_full = Instant::now() + agent.opts.interval;
        } else if let Some(p) = pending.take_if(|p| p.due() <= now) {
            pending = agent.on_events(p)?;
        } else if agent.sweeper.next_due().is_some_and(|due| due <= now) {
            agent.sweep();
        }
    }
}
