//! The state store: what each attachment owns, under one lock per network.
//!
//! Layout of `<stateDir>/<network>/` (directories 0700, files 0600):
//!
//! ```text
//! lock                          flock(2) target; writers hold it exclusively
//! lock.add                      flock(2) target: an ADD waiting for `lock` holds it shared
//! attachments/<cid>@<ifname>.json   one Record per attachment
//! nodes/<key>.json              one NodeGroup per node-level group of objects
//! holds/<key>/<cid>@<ifname>    empty file: this attachment needs group <key>
//! holds/owner.<hash> -> <cid>@<ifname>
//!                               symlink, never followed: the owner of a pod
//!                               address's node objects (`links.rs`; in the
//!                               node scope `claim.table.<id>` and
//!                               `claim.priority.<n>` -> <network>@<group>,
//!                               a claim's only record)
//! corrupt/<file>.<unix-time>    unreadable records, set aside for a human
//!                               (`holds.<key>….<unix-time>` from `holds/`)
//! ```
//!
//! Node-wide state that several networks share lives in the same layout
//! under `<stateDir>/.node/` ([`NODE_SCOPE`]; no network name starts with a
//! dot): a node-wide sysctl is one group there, held by the network groups
//! that need it (holder `<network>@<group key>`), so that the last network
//! to need it, not the first to go, restores the value found before.
//! Its lock is only ever taken while a network's lock is held, never the
//! other way round.
//!
//! Every write goes to a temporary file that is then renamed over the
//! target, so a process killed at any instant leaves either the old or the
//! new record, never a torn one. Records carry a schema version.
//!
//! Pod starts go first: kubelet waits on every ADD, nobody waits on a DEL
//! in the same way. An ADD that has to wait for the lock says so by holding
//! `lock.add` shared; every other caller (DEL, CHECK, GC, STATUS, the CLI)
//! takes the lock only when no ADD is waiting, and gives it back at once if
//! one started waiting in between. Without this, an ADD arriving during a
//! burst of 100 `connmark` DELs (each holding the lock ~18 ms while
//! nf_tables serialises its commit) waited about 1.1 s for its turn.
//! The node-wide lock below is taken plainly: it is only ever held briefly,
//! inside a network's lock.
//!
//! Reference counting is by holder files, not counters: a crash between two
//! steps can leave a holder too many (then GC or DEL of that attachment
//! removes it), never a count that silently drifts. "Am I the last holder?"
//! reads one directory entry, so it costs the same with 1 or 1000 pods.
//!
//! The store is root's (`file.rs`): a state directory anyone else can
//! write is refused, nothing in it is followed through a symlink, and only
//! regular root-owned files are read; anything else where a record, a
//! group or a holder list belongs is set aside in `corrupt/`, as is a
//! record or group whose content names another attachment or group than
//! its file name. The lock holds only while the locked file is still the
//! one at the lock path (`lock.rs`).

mod file;
mod holds;
mod links;
mod lock;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, code};
use file::Entry;
use lock::Turn;

pub use crate::model::{AttachmentId, GroupKey, NodeGroup, OLDEST_SCHEMA, Record, SCHEMA};

/// The store of node-wide state shared by networks (see the module docs).
pub const NODE_SCOPE: &str = ".node";

/// A record that could not be read, and where it was put.
#[derive(Debug, Clone)]
pub struct Corrupt {
    pub file: PathBuf,
    pub moved_to: PathBuf,
    pub reason: String,
}

/// An open, locked store for one network. The lock is released on drop.
pub struct Store {
    dir: PathBuf,
    /// `<network>/`, locked too (see [`lock`]); released before `lock`.
    net: File,
    attachments: File,
    nodes: File,
    holds: File,
    /// The state directory, for the node scope next to this store.
    state: File,
    lock: File,
    /// How long taking the lock took.
    pub waited: Duration,
    /// The bound this store was opened with (also used for the node scope).
    wait: Duration,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Which of the store's directories a file is in.
#[derive(Clone, Copy)]
enum Sub {
    Attachments,
    Nodes,
    Holds,
}

impl Sub {
    fn name(self) -> &'static str {
        match self {
            Sub::Attachments => "attachments",
            Sub::Nodes => "nodes",
            Sub::Holds => "holds",
        }
    }
}

/// Set entry `name` of `from` (at `<dir>/<prefix>`) aside as
/// `corrupt/<name>.<time>` (`corrupt/holds.<key>….<time>` for what was in
/// `holds/`): renamed, never followed or read; logged.
fn set_aside_in(
    net: &File,
    dir: &Path,
    from: (&File, &str),
    name: &str,
    reason: String,
) -> Result<Corrupt> {
    let (from_dir, prefix) = from;
    let corrupt_path = dir.join("corrupt");
    let corrupt = file::private_dir(net, &corrupt_path, "corrupt", true)?
        .ok_or_else(|| Error::new(code::IO, format!("{} vanished", corrupt_path.display())))?;
    let file = dir.join(format!("{prefix}{name}"));
    let origin = match prefix.strip_prefix("holds/") {
        Some(_) => prefix.replace('/', "."),
        None => String::new(),
    };
    // rename(2) replaces what has the name: take one nothing has yet (the
    // same entry set aside twice in a second, in one process or several).
    let base = format!("{origin}{name}.{}", now());
    let mut to = base.clone();
    let mut n = 0u32;
    while file::stat_entry(&corrupt, &to).ok().flatten().is_some() {
        n += 1;
        to = format!("{base}.{}.{n}", std::process::id());
    }
    file::rename(from_dir, name, &corrupt, &to)
        .map_err(|e| Error::io(format!("setting aside {}", file.display()), e))?;
    let moved_to = corrupt_path.join(&to);
    crate::fault::state_changed(&format_args!("set aside {}", file.display()));
    log::error!(
        "state record {} is unreadable ({reason}); set aside as {}",
        file.display(),
        moved_to.display()
    );
    Ok(Corrupt {
        file,
        moved_to,
        reason,
    })
}

impl Store {
    /// Open `<state_dir>/<network>` and take its exclusive lock, waiting at
    /// most `wait`, after any ADD that is waiting for it. A timeout is CNI
    /// error 11 ("try again later").
    pub fn open(state_dir: &Path, network: &str, wait: Duration) -> Result<Store> {
        Store::open_as(state_dir, network, wait, Turn::AfterAdds, true).map(Option::unwrap)
    }

    /// [`Store::open`] for an ADD: it goes before every other caller that
    /// is waiting (pod starts are what kubelet waits on).
    pub fn open_for_add(state_dir: &Path, network: &str, wait: Duration) -> Result<Store> {
        Store::open_as(state_dir, network, wait, Turn::Add, true).map(Option::unwrap)
    }

    /// [`Store::open`] when there is nothing to do without a store (DEL):
    /// `None`, and nothing made, when the state directory or the network's
    /// directory does not exist (or the state directory is not a
    /// directory). A store that exists is locked as by [`Store::open`].
    pub fn open_existing(state_dir: &Path, network: &str, wait: Duration) -> Result<Option<Store>> {
        Store::open_as(state_dir, network, wait, Turn::AfterAdds, false)
    }

    fn open_as(
        state_dir: &Path,
        network: &str,
        wait: Duration,
        turn: Turn,
        create: bool,
    ) -> Result<Option<Store>> {
        match file::open_state_dir(state_dir, create)? {
            Some(state) => Store::open_in(state, state_dir, network, wait, turn, create),
            None => Ok(None),
        }
    }

    /// The store `network` in the state directory `state` (at `state_dir`).
    /// Once `<network>/` exists its subdirectories are made too: whoever
    /// gets past here finds them, also when several first calls race.
    fn open_in(
        state: File,
        state_dir: &Path,
        network: &str,
        wait: Duration,
        turn: Turn,
        create: bool,
    ) -> Result<Option<Store>> {
        let dir = state_dir.join(network);
        let Some(net) = file::private_dir(&state, &dir, network, create)? else {
            return Ok(None);
        };
        let sub = |name: &str| -> Result<File> {
            let path = dir.join(name);
            file::private_dir(&net, &path, name, true)?
                .ok_or_else(|| Error::new(code::IO, format!("{} vanished", path.display())))
        };
        let (attachments, nodes, holds) = (sub("attachments")?, sub("nodes")?, sub("holds")?);
        let set_aside =
            |name: &str, why: String| set_aside_in(&net, &dir, (&net, ""), name, why).map(|_| ());
        let (lock, waited) = lock::take(&net, &dir, wait, turn, &set_aside)?;
        Ok(Some(Store {
            dir,
            net,
            attachments,
            nodes,
            holds,
            state,
            lock,
            waited,
            wait,
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Can this store be written (STATUS)? A file made and removed in it.
    pub fn probe_writable(&self) -> std::io::Result<()> {
        file::probe_writable(&self.net)
    }

    /// The network this store belongs to ([`NODE_SCOPE`] for node-wide state).
    pub fn network(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn is_node_scope(&self) -> bool {
        self.network() == NODE_SCOPE
    }

    /// Open and lock the node-wide store next to this network's, with the
    /// same bound on the wait. Take it only while holding a network's lock.
    pub fn open_node_scope(&self) -> Result<Store> {
        let root = self.dir.parent().unwrap_or(Path::new("/"));
        let state = self
            .state
            .try_clone()
            .map_err(|e| Error::io(format!("opening {}", root.display()), e))?;
        let node = Store::open_in(state, root, NODE_SCOPE, self.wait, Turn::Plain, true)?
            .ok_or_else(|| Error::new(code::IO, format!("{NODE_SCOPE} vanished")))?;
        if node.waited > Duration::from_secs(1) {
            log::warn!(
                "waited {} ms for the node-wide state lock",
                node.waited.as_millis()
            );
        }
        Ok(node)
    }

    fn sub(&self, sub: Sub) -> &File {
        match sub {
            Sub::Attachments => &self.attachments,
            Sub::Nodes => &self.nodes,
            Sub::Holds => &self.holds,
        }
    }

    fn path(&self, sub: Sub, name: &str) -> PathBuf {
        self.dir.join(sub.name()).join(name)
    }

    /// Set entry `name` of `sub` aside in `corrupt/` (see [`set_aside_in`]).
    fn set_aside(&self, sub: Sub, name: &str, reason: String) -> Result<Corrupt> {
        let prefix = format!("{}/", sub.name());
        let corrupt = set_aside_in(&self.net, &self.dir, (self.sub(sub), &prefix), name, reason)?;
        Ok(corrupt)
    }

    /// Write `value` to `name` in `sub` atomically (temp file + rename), mode 0600.
    fn write_json<T: Serialize>(&self, sub: Sub, name: &str, value: &T) -> Result<()> {
        let path = self.path(sub, name);
        let text = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::new(code::STATE, format!("encoding {}: {e}", path.display())))?;
        let dir = self.sub(sub);
        let mut written = file::write_atomic(dir, name, &text);
        if written
            .as_ref()
            .is_err_and(|e| matches!(e.raw_os_error(), Some(libc::EISDIR | libc::ENOTEMPTY)))
        {
            // A directory where the file goes: set it aside, then write.
            self.set_aside(sub, name, "a directory, not a regular file".into())?;
            written = file::write_atomic(dir, name, &text);
        }
        written.map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        crate::fault::state_changed(&format_args!("wrote {}", path.display()));
        Ok(())
    }

    /// Read `name` in `sub`: `Missing` if it does not exist; an entry that is
    /// not a regular file of ours, does not parse, has an unknown schema or
    /// fails `names_itself` is set aside.
    fn load<T: for<'de> Deserialize<'de>>(
        &self,
        sub: Sub,
        name: &str,
        names_itself: impl Fn(&T) -> Result<(), String>,
    ) -> Result<Loaded<T>> {
        let path = self.path(sub, name);
        let reason = match file::open_entry(self.sub(sub), name, false) {
            Ok(Entry::Missing) => return Ok(Loaded::Missing),
            Ok(Entry::NotOurs(why)) => why,
            Ok(Entry::File(f, st)) => {
                let bytes = file::read_sized(&f, st.st_size)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                match parse_versioned::<T>(&bytes).and_then(|v| names_itself(&v).map(|()| v)) {
                    Ok(v) => return Ok(Loaded::Value(v)),
                    Err(reason) => reason,
                }
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        Ok(Loaded::SetAside(self.set_aside(sub, name, reason)?))
    }

    /// [`Store::load`] for one file: a set-aside file is an error (code 102).
    fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        sub: Sub,
        name: &str,
        names_itself: impl Fn(&T) -> Result<(), String>,
    ) -> Result<Option<T>> {
        match self.load(sub, name, names_itself)? {
            Loaded::Missing => Ok(None),
            Loaded::Value(v) => Ok(Some(v)),
            Loaded::SetAside(c) => Err(Error::new(
                code::STATE,
                format!(
                    "state record {} is unreadable ({}); set aside as {}",
                    c.file.display(),
                    c.reason,
                    c.moved_to.display()
                ),
            )),
        }
    }

    /// A record must name the attachment of its file name, in this network.
    fn names_attachment(&self, stem: &str) -> impl Fn(&Record) -> Result<(), String> {
        let network = self.network();
        move |r: &Record| {
            if r.id.stem() != stem || r.network != network {
                return Err(format!(
                    "it names attachment {} of network {:?}, not {stem} of {network:?}",
                    r.id.stem(),
                    r.network
                ));
            }
            Ok(())
        }
    }

    pub fn get(&self, id: &AttachmentId) -> Result<Option<Record>> {
        let stem = id.stem();
        let names = self.names_attachment(&stem);
        self.read_json(Sub::Attachments, &format!("{stem}.json"), names)
    }

    pub fn put(&self, record: &Record) -> Result<()> {
        let name = format!("{}.json", record.id.stem());
        self.write_json(Sub::Attachments, &name, record)
    }

    pub fn delete(&self, id: &AttachmentId) -> Result<()> {
        self.remove(Sub::Attachments, &format!("{}.json", id.stem()))
    }

    fn remove(&self, sub: Sub, name: &str) -> Result<()> {
        let path = self.path(sub, name);
        file::unlink(self.sub(sub), name)
            .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        crate::fault::state_changed(&format_args!("removed {}", path.display()));
        Ok(())
    }

    fn names(&self, dir: &File, path: &Path, first: bool) -> Result<Vec<String>> {
        file::names(dir, first).map_err(|e| Error::io(format!("reading {}", path.display()), e))
    }

    /// Every readable record, and the ones that were set aside.
    pub fn list(&self) -> Result<(Vec<Record>, Vec<Corrupt>)> {
        let mut records = Vec::new();
        let mut corrupt = Vec::new();
        let dir = self.dir.join("attachments");
        for name in self.names(&self.attachments, &dir, false)? {
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            match self.load(Sub::Attachments, &name, self.names_attachment(stem))? {
                Loaded::Missing => {}
                Loaded::Value(r) => records.push(r),
                Loaded::SetAside(c) => corrupt.push(c),
            }
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((records, corrupt))
    }

    pub fn group(&self, key: &GroupKey) -> Result<Option<NodeGroup>> {
        let names_itself = |g: &NodeGroup| {
            if g.key == *key {
                Ok(())
            } else {
                Err(format!("it names group {}, not {key}", g.key))
            }
        };
        self.read_json(Sub::Nodes, &format!("{key}.json"), names_itself)
    }

    pub fn put_group(&self, group: &NodeGroup) -> Result<()> {
        self.write_json(Sub::Nodes, &format!("{}.json", group.key), group)
    }

    pub fn delete_group(&self, key: &GroupKey) -> Result<()> {
        self.remove(Sub::Nodes, &format!("{key}.json"))?;
        if key.has_one_holder() {
            // Its holder's link goes with the holder (`links.rs`).
            return Ok(());
        }
        let name = key.to_string();
        match file::rmdir_if_empty(&self.holds, &name) {
            Ok(true) => {
                crate::fault::state_changed(&format_args!("removed holders of {key}"));
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                self.set_aside(Sub::Holds, &name, "not a directory".into())?;
                Ok(())
            }
            Err(e) => Err(Error::io("removing holders directory", e)),
        }
    }

    /// Keys of every node group on record; in the node scope also every
    /// table and priority claim, whose record is its link in `holds/`
    /// (`links.rs`; an older gwsteer's claims have a group file too).
    pub fn group_keys(&self) -> Result<Vec<GroupKey>> {
        let dir = self.dir.join("nodes");
        let mut keys: Vec<GroupKey> = self
            .names(&self.nodes, &dir, false)?
            .iter()
            .filter_map(|name| {
                name.strip_suffix(".json")?
                    .parse()
                    .map_err(|e| log::warn!("{}: ignored: {e}", dir.join(name).display()))
                    .ok()
            })
            .collect();
        if self.is_node_scope() {
            keys.extend(
                self.names(&self.holds, &self.dir.join("holds"), false)?
                    .iter()
                    .filter_map(|name| name.parse::<GroupKey>().ok())
                    .filter(GroupKey::is_claim),
            );
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Remove the network's whole state directory (cleanup).
    pub fn destroy(self) -> Result<()> {
        let Store { dir, lock, net, .. } = self;
        // remove_dir_all does not follow symlinks it finds in the tree.
        std::fs::remove_dir_all(&dir)
            .or_else(|e| {
                if e.kind() == ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
        crate::fault::state_changed(&format_args!("removed {}", dir.display()));
        drop(net);
        drop(lock);
        Ok(())
    }
}

/// A file of the store, read.
enum Loaded<T> {
    Missing,
    Value(T),
    SetAside(Corrupt),
}

fn parse_versioned<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    match value.get("schema").and_then(serde_json::Value::as_u64) {
        Some(s) if (u64::from(OLDEST_SCHEMA)..=u64::from(SCHEMA)).contains(&s) => {}
        Some(s) => {
            return Err(format!(
                "schema {s}, this gwsteer reads schemas {OLDEST_SCHEMA} to {SCHEMA}"
            ));
        }
        None => return Err("no schema version".into()),
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// Networks that have a state directory under `state_dir` (not the node scope).
pub fn networks(state_dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(state_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", state_dir.display()), e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| std::fs::symlink_metadata(e.path().join("lock")).is_ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}
