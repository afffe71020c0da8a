//! Keeping the chain (`--plugin FILE`): the primary CNI (kindnet, flannel,
//! calico's install-cni) rewrites its conflist when it restarts, and the
//! gwsteer entry is gone — every pod started afterwards would leave by the
//! wrong door with no error anywhere. The agent watches the CNI conf dir
//! (inotify) and, a moment after the primary's last write
//! ([`SETTLE`]), chains the plugin object again into the file the runtime
//! uses ([`crate::ops::install::chain`], the installer's own code: temp
//! file + rename, its record for `--uninstall` kept).
//!
//! It never rewrites a file that already chains gwsteer (whatever its
//! gwsteer entry says: that may be the operator's edit), never recreates a
//! file the primary deleted (no conf file: nothing to chain, and said
//! once), and logs each re-chain with the file and the reason.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::error::{Error, Result};
use crate::ops::install::{self, Plugin};

/// How long the conf dir must be quiet before the agent looks: a primary
/// may write its file in more than one step.
pub const SETTLE: Duration = Duration::from_millis(100);

pub struct Keeper {
    conf_dir: PathBuf,
    plugin: Plugin,
    watch: DirWatch,
    /// What the last look found, so a state is logged once, not per event.
    last: Option<String>,
}

impl Keeper {
    /// Watches `conf_dir` for changes (it must exist) and keeps `plugin`
    /// chained there.
    pub fn new(conf_dir: &Path, plugin: Plugin) -> Result<Keeper> {
        let mask = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_ATTRIB;
        let watch = DirWatch::open(conf_dir, mask).map_err(|e| {
            Error::config(format!(
                "--cni-conf-dir {}: cannot watch it: {e}",
                conf_dir.display()
            ))
        })?;
        Ok(Keeper {
            conf_dir: conf_dir.to_path_buf(),
            plugin,
            watch,
            last: None,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.watch.fd()
    }

    /// Reads the pending events; the next look is [`SETTLE`] after them.
    /// The installer's own temp files and record are not the primary's
    /// doing; their renames still land as IN_MOVED_TO on the conf file,
    /// which a look then finds chained.
    pub fn drain(&mut self, now: Instant) {
        self.watch.drain_if(now, install::is_conf_name);
    }

    pub fn due(&self) -> Option<Instant> {
        self.watch.due()
    }

    /// Looks at the file the runtime uses and chains gwsteer into it if the
    /// primary wrote it without. Returns what it did, when it did anything.
    pub fn keep(&mut self, why: &str) -> Option<String> {
        self.watch.done();
        let state = match self.look() {
            Ok(Look::Chained(file)) => {
                self.note(format!("{file} chains gwsteer"));
                return None;
            }
            Ok(Look::Nothing) => {
                self.note(format!(
                    "no conf file in {}: nothing to chain (not recreated: the primary's to write)",
                    self.conf_dir.display()
                ));
                return None;
            }
            Ok(Look::Unchained(file)) => file,
            Err(e) => {
                self.note(format!("agent: keeping the chain: {e}"));
                return None;
            }
        };
        match install::chain(&self.conf_dir, &self.plugin) {
            Ok(outcome) => {
                let line = format!(
                    "agent: re-chained gwsteer: {outcome} ({why}: {state} had no gwsteer entry)"
                );
                log::warn!("{line}");
                self.last = None;
                Some(line)
            }
            Err(e) => {
                log::error!("agent: re-chaining gwsteer into {state}: {e}");
                None
            }
        }
    }

    /// Logs `state` when it differs from the last one.
    fn note(&mut self, state: String) {
        if self.last.as_deref() != Some(state.as_str()) {
            log::info!("agent: chain: {state}");
            self.last = Some(state);
        }
    }

    fn look(&self) -> Result<Look> {
        let Some(name) = install::first_conf(&self.conf_dir)? else {
            return Ok(Look::Nothing);
        };
        let path = self.conf_dir.join(&name);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            // Gone between the listing and the read: the next event says more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Look::Nothing),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let shown = path.display().to_string();
        match serde_json::from_slice::<serde_json::Value>(&text) {
            Ok(v) if chains_gwsteer(&v) => Ok(Look::Chained(shown)),
            Ok(_) => Ok(Look::Unchained(shown)),
            // Half-written or not JSON: leave it; its next write is an event.
            Err(e) => Err(Error::config(format!(
                "{shown}: not JSON ({e}); left alone"
            ))),
        }
    }
}

enum Look {
    Chained(String),
    Unchained(String),
    Nothing,
}

/// A conflist with a gwsteer plugin, or a single plugin `.conf` of type
/// gwsteer.
pub fn chains_gwsteer(conf: &serde_json::Value) -> bool {
    let is = |p: &serde_json::Value| p["type"] == "gwsteer";
    match conf["plugins"].as_array() {
        Some(plugins) => plugins.iter().any(is),
        None => is(conf),
    }
}

/// A directory watched with inotify, and when to look at it: [`SETTLE`]
/// after the last event that matters. The conf dir (see [`Keeper`]) and
/// libcni's cache (an entry written by the runtime for a pod gwsteer's ADD
/// never reached).
pub struct DirWatch {
    inotify: Inotify,
    due: Option<Instant>,
}

impl DirWatch {
    /// A watch of `dir` for `mask`.
    pub fn open(dir: &Path, mask: AddWatchFlags) -> nix::Result<DirWatch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        inotify.add_watch(dir, mask)?;
        Ok(DirWatch { inotify, due: None })
    }

    /// A watch of new files in `dir`; `None` when it cannot be watched (it
    /// does not exist yet): the full round still looks at it.
    pub fn new(dir: &Path) -> Option<DirWatch> {
        DirWatch::open(
            dir,
            AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MOVED_TO,
        )
        .ok()
    }

    pub fn fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }

    /// Reads the pending events; any sets the next look.
    pub fn drain(&mut self, now: Instant) {
        self.drain_if(now, |_| true);
    }

    /// Reads the pending events; one about a name `matters` accepts (or
    /// about the directory itself) sets the next look.
    pub fn drain_if(&mut self, now: Instant, matters: impl Fn(&str) -> bool) {
        let mut any = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            any |= events.iter().any(|e| {
                e.name
                    .as_ref()
                    .and_then(|n| n.to_str())
                    .is_none_or(&matters)
            });
        }
        if any {
            self.due = Some(now + SETTLE);
        }
    }

    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    pub fn done(&mut self) {
        self.due = None;
    }
}
