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
//! corrupt/<file>.<unix-time>    unreadable records, set aside for a human
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

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, code};

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

fn mkdir(path: &Path) -> Result<()> {
    match DirBuilder::new().recursive(true).mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::io(format!("creating {}", path.display()), e)),
    }
}

/// The lock file; with `create`, made if absent. The first call on a new
/// store makes the subdirectories before it makes the lock file, and every
/// call that does not find the lock file makes them too: whoever gets
/// past here finds them, also when several first calls race (a process
/// that found `<network>/` made by another's `mkdir` would otherwise write
/// into a subdirectory that does not exist yet).
fn open_lock(path: &Path, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// Who is asking for a store's lock (see the module notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Turn {
    /// An ADD: says it waits, and goes before the others.
    Add,
    /// Anyone else: lets waiting ADDs go first.
    AfterAdds,
    /// The node-wide store: taken inside a network's lock, briefly.
    Plain,
}

/// Backoff between two tries of a lock.
struct Backoff {
    start: Instant,
    wait: Duration,
    pause: Duration,
}

impl Backoff {
    fn new(wait: Duration) -> Backoff {
        Backoff {
            start: Instant::now(),
            wait,
            pause: Duration::from_micros(200),
        }
    }

    /// Sleep before the next try; false once `wait` has passed.
    fn pause(&mut self) -> bool {
        if self.start.elapsed() >= self.wait {
            return false;
        }
        std::thread::sleep(self.pause);
        self.pause = (self.pause * 2).min(Duration::from_millis(10));
        true
    }
}

impl Store {
    /// Open `<state_dir>/<network>` and take its exclusive lock, waiting at
    /// most `wait`, after any ADD that is waiting for it. A timeout is CNI
    /// error 11 ("try again later").
    pub fn open(state_dir: &Path, network: &str, wait: Duration) -> Result<Store> {
        Store::open_as(state_dir, network, wait, Turn::AfterAdds)
    }

    /// [`Store::open`] for an ADD: it goes before every other caller that
    /// is waiting (pod starts are what kubelet waits on).
    pub fn open_for_add(state_dir: &Path, network: &str, wait: Duration) -> Result<Store> {
        Store::open_as(state_dir, network, wait, Turn::Add)
    }

    fn open_as(state_dir: &Path, network: &str, wait: Duration, turn: Turn) -> Result<Store> {
        let dir = state_dir.join(network);
        let lock_path = dir.join("lock");
        let lock = match open_lock(&lock_path, false) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                for sub in ["attachments", "nodes", "holds"] {
                    mkdir(&dir.join(sub))?;
                }
                open_lock(&lock_path, true)
                    .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?
            }
            Err(e) => return Err(Error::io(format!("opening {}", lock_path.display()), e)),
        };
        let mut backoff = Backoff::new(wait);
        let timeout = |why: &str| {
            Error::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "state store {} {why}; gave up after {} ms",
                    lock_path.display(),
                    wait.as_millis()
                ),
            )
        };
        let adds_path = dir.join("lock.add");
        // `lock.add` is made by the first ADD that has to wait; where it is
        // missing, no ADD ever waited here.
        let open_adds = |create: bool| match open_lock(&adds_path, create) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == ErrorKind::NotFound && !create => Ok(None),
            Err(e) => Err(Error::io(format!("opening {}", adds_path.display()), e)),
        };
        // Is an ADD waiting? (Taking `lock.add` exclusively for an instant
        // succeeds only when no ADD holds it shared.)
        let add_waiting = |adds: &File| match adds.try_lock() {
            Ok(()) => {
                let _ = adds.unlock();
                Ok(false)
            }
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(e)) => {
                Err(Error::io(format!("locking {}", adds_path.display()), e))
            }
        };
        let mut adds: Option<File> = None;
        let mut announced = false;
        loop {
            match lock.try_lock() {
                Ok(()) if turn != Turn::AfterAdds => break,
                Ok(()) => {
                    if adds.is_none() {
                        adds = open_adds(false)?;
                    }
                    match &adds {
                        // An ADD started waiting meanwhile: it goes first.
                        Some(a) if add_waiting(a)? => {
                            let _ = lock.unlock();
                        }
                        _ => break,
                    }
                }
                Err(TryLockError::WouldBlock) => {
                    if turn == Turn::Add && !announced {
                        if adds.is_none() {
                            adds = open_adds(true)?;
                        }
                        // Shared with other waiting ADDs; only another
                        // caller's instant probe holds it exclusively.
                        announced = adds.as_ref().is_some_and(|a| a.try_lock_shared().is_ok());
                    }
                }
                Err(TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", lock_path.display()), e));
                }
            }
            if !backoff.pause() {
                return Err(timeout("is locked by another gwsteer"));
            }
            // The others wait here, off the lock, while any ADD waits.
            if turn == Turn::AfterAdds {
                if adds.is_none() {
                    adds = open_adds(false)?;
                }
                if let Some(a) = &adds {
                    while add_waiting(a)? {
                        if !backoff.pause() {
                            return Err(timeout("was wanted by pod starts (ADD) all the while"));
                        }
                    }
                }
            }
        }
        // The ADD has the lock: it no longer waits (closing `adds` would
        // release it too).
        drop(adds);
        Ok(Store {
            dir,
            lock,
            waited: backoff.start.elapsed(),
            wait,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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
        let node = Store::open_as(root, NODE_SCOPE, self.wait, Turn::Plain)?;
        if node.waited > Duration::from_secs(1) {
            log::warn!(
                "waited {} ms for the node-wide state lock",
                node.waited.as_millis()
            );
        }
        Ok(node)
    }

    fn record_path(&self, id: &AttachmentId) -> PathBuf {
        self.dir
            .join("attachments")
            .join(format!("{}.json", id.stem()))
    }

    fn group_path(&self, key: &GroupKey) -> PathBuf {
        self.dir.join("nodes").join(format!("{key}.json"))
    }

    fn holds_dir(&self, key: &GroupKey) -> PathBuf {
        self.dir.join("holds").join(key.to_string())
    }

    /// Write `value` to `path` atomically (temp file + rename), mode 0600.
    fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        let text = serde_json::to_vec_pretty(value)
            .map_err(|e| Error::new(code::STATE, format!("encoding {}: {e}", path.display())))?;
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&text)?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io(format!("writing {}", path.display()), e)
        })?;
        crate::fault::state_changed(&format_args!("wrote {}", path.display()));
        Ok(())
    }

    /// Read a JSON file. `Ok(None)` if it does not exist; a file that does
    /// not parse, or has an unknown schema, is moved to `corrupt/` and
    /// reported as an error (code 102).
    fn read_json<T: for<'de> Deserialize<'de>>(&self, path: &Path) -> Result<Option<T>> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        match parse_versioned::<T>(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(reason) => {
                let c = self.set_aside(path, reason)?;
                Err(Error::new(
                    code::STATE,
                    format!(
                        "state record {} is unreadable ({}); set aside as {}",
                        c.file.display(),
                        c.reason,
                        c.moved_to.display()
                    ),
                ))
            }
        }
    }

    fn set_aside(&self, path: &Path, reason: String) -> Result<Corrupt> {
        let corrupt_dir = self.dir.join("corrupt");
        mkdir(&corrupt_dir)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let moved_to = corrupt_dir.join(format!("{name}.{}", now()));
        fs::rename(path, &moved_to)
            .map_err(|e| Error::io(format!("setting aside {}", path.display()), e))?;
        crate::fault::state_changed(&format_args!("set aside {}", path.display()));
        log::error!(
            "state record {} is unreadable ({reason}); set aside as {}",
            path.display(),
            moved_to.display()
        );
        Ok(Corrupt {
            file: path.to_path_buf(),
            moved_to,
            reason,
        })
    }

    pub fn get(&self, id: &AttachmentId) -> Result<Option<Record>> {
        self.read_json(&self.record_path(id))
    }

    pub fn put(&self, record: &Record) -> Result<()> {
        self.write_json(&self.record_path(&record.id), record)
    }

    pub fn delete(&self, id: &AttachmentId) -> Result<()> {
        remove_file(&self.record_path(id))
    }

    /// Every readable record, and the ones that were set aside.
    pub fn list(&self) -> Result<(Vec<Record>, Vec<Corrupt>)> {
        let mut records = Vec::new();
        let mut corrupt = Vec::new();
        for path in list_dir(&self.dir.join("attachments"))? {
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
            };
            match parse_versioned::<Record>(&bytes) {
                Ok(r) => records.push(r),
                Err(reason) => corrupt.push(self.set_aside(&path, reason)?),
            }
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((records, corrupt))
    }

    pub fn group(&self, key: &GroupKey) -> Result<Option<NodeGroup>> {
        self.read_json(&self.group_path(key))
    }

    pub fn put_group(&self, group: &NodeGroup) -> Result<()> {
        self.write_json(&self.group_path(&group.key), group)
    }

    pub fn delete_group(&self, key: &GroupKey) -> Result<()> {
        remove_file(&self.group_path(key))?;
        match fs::remove_dir(self.holds_dir(key)) {
            Ok(()) => {
                crate::fault::state_changed(&format_args!("removed holders of {key}"));
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::DirectoryNotEmpty) => {
                Ok(())
            }
            Err(e) => Err(Error::io("removing holders directory", e)),
        }
    }

    /// Keys of every node group on record.
    pub fn group_keys(&self) -> Result<Vec<GroupKey>> {
        let mut keys: Vec<GroupKey> = list_dir(&self.dir.join("nodes"))?
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter_map(|p| {
                let stem = p.file_stem()?.to_string_lossy().into_owned();
                stem.parse()
                    .map_err(|e| log::warn!("{}: ignored: {e}", p.display()))
                    .ok()
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Record that `id` needs group `key`.
    pub fn hold(&self, key: &GroupKey, id: &AttachmentId) -> Result<()> {
        self.hold_by(key, &id.stem())
    }

    /// Record that `holder` (a file name) needs group `key`.
    pub fn hold_by(&self, key: &GroupKey, holder: &str) -> Result<()> {
        let dir = self.holds_dir(key);
        let path = dir.join(holder);
        let create = || {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
        };
        match create() {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                mkdir(&dir)?;
                create().map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            }
            Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
        }
        crate::fault::state_changed(&format_args!("wrote {}", path.display()));
        Ok(())
    }

    /// Drop `id`'s hold on `key`; true when nobody holds the group any more.
    pub fn release(&self, key: &GroupKey, id: &AttachmentId) -> Result<bool> {
        self.release_by(key, &id.stem())
    }

    /// Drop `holder`'s hold on `key`; true when nobody holds the group any more.
    pub fn release_by(&self, key: &GroupKey, holder: &str) -> Result<bool> {
        let dir = self.holds_dir(key);
        remove_file(&dir.join(holder))?;
        // "Am I the last?" without listing the directory: rmdir succeeds only
        // when it is empty, and the kernel stops at the first entry it finds.
        // (read_dir asks for 32 KiB of entries at once: with 1000 holders on
        // tmpfs that is ~0.25 ms per DEL.) The next hold re-creates it.
        match fs::remove_dir(&dir) {
            Ok(()) => {
                crate::fault::state_changed(&format_args!("removed holders of {key}"));
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(true),
            Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => Ok(false),
            Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
        }
    }

    /// True when no attachment holds group `key`.
    pub fn unheld(&self, key: &GroupKey) -> Result<bool> {
        match fs::read_dir(self.holds_dir(key)) {
            Ok(mut entries) => Ok(entries.next().is_none()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(true),
            Err(e) => Err(Error::io("reading holders", e)),
        }
    }

    /// Attachments holding group `key` (for show/GC; not on the hot path).
    pub fn holders(&self, key: &GroupKey) -> Result<Vec<String>> {
        let mut names: Vec<String> = list_dir(&self.holds_dir(key))?
            .iter()
            .filter_map(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Remove a holder file by its name (as returned by [`Store::holders`]).
    pub fn drop_holder(&self, key: &GroupKey, holder: &str) -> Result<()> {
        remove_file(&self.holds_dir(key).join(holder))
    }

    /// Is `holder` (a holder file name) an attachment with a record?
    pub fn has_record_stem(&self, holder: &str) -> bool {
        self.dir
            .join("attachments")
            .join(format!("{holder}.json"))
            .exists()
    }

    /// Remove the network's whole state directory (cleanup).
    pub fn destroy(self) -> Result<()> {
        let dir = self.dir.clone();
        fs::remove_dir_all(&dir)
            .or_else(|e| {
                if e.kind() == ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
        crate::fault::state_changed(&format_args!("removed {}", dir.display()));
        drop(self.lock);
        Ok(())
    }
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

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
    }
    crate::fault::state_changed(&format_args!("removed {}", path.display()));
    Ok(())
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("reading {}", dir.display()), e)),
    }
}

/// Networks that have a state directory under `state_dir` (not the node scope).
pub fn networks(state_dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = list_dir(state_dir)?
        .iter()
        .filter(|p| p.join("lock").exists())
        .filter_map(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gwsteer-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn id(c: &str) -> AttachmentId {
        AttachmentId {
            container_id: c.into(),
            ifname: "eth0".into(),
        }
    }

    fn record(c: &str) -> Record {
        Record {
            schema: SCHEMA,
            network: "net".into(),
            id: id(c),
            netns: None,
            pod_namespace: Some("default".into()),
            pod_name: None,
            objects: vec![],
            holds: vec![GroupKey::Policy("oam".into())],
            created: 1,
        }
    }

    #[test]
    fn records_round_trip_with_private_modes() {
        let root = tmp("rt");
        let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
        s.put(&record("c1")).unwrap();
        assert_eq!(s.get(&id("c1")).unwrap(), Some(record("c1")));
        assert_eq!(s.get(&id("c2")).unwrap(), None);
        let dir_mode = fs::metadata(root.join("net/attachments"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let file_mode = fs::metadata(root.join("net/attachments/c1@eth0.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(file_mode & 0o777, 0o600);
        s.delete(&id("c1")).unwrap();
        s.delete(&id("c1")).unwrap();
        assert_eq!(s.list().unwrap().0.len(), 0);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn corrupt_records_are_set_aside_not_fatal() {
        let root = tmp("corrupt");
        let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
        s.put(&record("good")).unwrap();
        fs::write(
            root.join("net/attachments/bad@eth0.json"),
            b"{\"schema\":1,",
        )
        .unwrap();
        fs::write(
            root.join("net/attachments/old@eth0.json"),
            b"{\"schema\":99}",
        )
        .unwrap();
        let e = s.get(&id("bad")).unwrap_err();
        assert_eq!(e.code, code::STATE);
        assert!(e.msg.contains("set aside"), "{}", e.msg);
        let (records, corrupt) = s.list().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(corrupt.len(), 1);
        assert!(corrupt[0].reason.contains("schema 99"));
        assert_eq!(fs::read_dir(root.join("net/corrupt")).unwrap().count(), 2);
        fs::remove_dir_all(root).unwrap();
    }

    /// An attachment record and a node group as the gwsteer that still had
    /// the iptables firewall backend wrote them (a connmark ADD with
    /// `firewallBackend: "iptables"`).
    const IPTABLES_RECORD: &str = r#"{
  "schema": 1,
  "network": "net",
  "containerId": "ctr1",
  "ifname": "eth0",
  "netns": "/run/netns/pod1",
  "podNamespace": "default",
  "podName": "pod1",
  "objects": [
    {
      "object": "firewall",
      "backend": "iptables",
      "firewall": {
        "fw": "member",
        "network": "net",
        "policy": "ret",
        "addr": "10.244.1.5/32"
      }
    }
  ],
  "holds": [
    "steering.ret",
    "sysctl.net.ipv4.conf.all.src_valid_mark",
    "exemption.10.244.0.0_16"
  ],
  "created": 1796311112
}"#;
    const IPTABLES_GROUP: &str = r#"{
  "schema": 1,
  "key": "steering.ret",
  "objects": [
    {
      "object": "route",
      "dst": "0.0.0.0/0",
      "table": 100,
      "kind": "unicast",
      "nexthops": [
        {
          "via": "192.168.2.1",
          "dev": "eth-b",
          "weight": 1
        }
      ]
    },
    {
      "object": "firewall",
      "backend": "iptables",
      "firewall": {
        "fw": "policy",
        "network": "net",
        "policy": "ret",
        "mark": 20,
        "mask": 4294967295,
        "marking": {
          "mode": "connmark",
          "ingress": [
            "eth-b"
          ]
        }
      }
    },
    {
      "object": "rule",
      "family": "inet",
      "priority": 1000,
      "fwmark": 20,
      "table": 100
    }
  ]
}"#;

    /// The iptables backend is gone: its records are set aside as corrupt
    /// (code 102, no panic) with a reason saying so, not read as nftables
    /// objects (whose removal would succeed and forget the iptables rules).
    #[test]
    fn records_of_the_retired_iptables_backend_are_set_aside() {
        // They are in the format this gwsteer reads and writes: with backend
        // nftables they parse and write back to the same JSON.
        for text in [IPTABLES_RECORD, IPTABLES_GROUP] {
            let nft = text.replace("\"iptables\"", "\"nftables\"");
            let written = if text == IPTABLES_RECORD {
                serde_json::to_string_pretty(&parse_versioned::<Record>(nft.as_bytes()).unwrap())
            } else {
                serde_json::to_string_pretty(&parse_versioned::<NodeGroup>(nft.as_bytes()).unwrap())
            };
            assert_eq!(written.unwrap(), nft);
        }

        let root = tmp("iptables");
        let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
        let record = root.join("net/attachments/ctr1@eth0.json");
        let group = root.join("net/nodes/steering.ret.json");
        fs::write(&record, IPTABLES_RECORD).unwrap();
        fs::write(&group, IPTABLES_GROUP).unwrap();
        for e in [
            s.get(&id("ctr1")).unwrap_err(),
            s.group(&GroupKey::Policy("ret".into())).unwrap_err(),
        ] {
            assert_eq!(e.code, code::STATE, "{}", e.msg);
            assert!(
                e.msg.contains(crate::model::RETIRED_IPTABLES) && e.msg.contains("set aside"),
                "{}",
                e.msg
            );
        }
        assert!(!record.exists() && !group.exists());
        assert_eq!(fs::read_dir(root.join("net/corrupt")).unwrap().count(), 2);
        assert_eq!(s.get(&id("ctr1")).unwrap(), None);
        assert_eq!(s.group(&GroupKey::Policy("ret".into())).unwrap(), None);

        fs::write(&record, IPTABLES_RECORD).unwrap();
        let (records, corrupt) = s.list().unwrap();
        assert!(records.is_empty());
        assert_eq!(corrupt.len(), 1);
        assert!(
            corrupt[0].reason.contains(crate::model::RETIRED_IPTABLES),
            "{}",
            corrupt[0].reason
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn holds_count_by_files() {
        let root = tmp("holds");
        let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
        let g = GroupKey::Policy("g".into());
        s.hold(&g, &id("a")).unwrap();
        s.hold(&g, &id("b")).unwrap();
        s.hold(&g, &id("b")).unwrap();
        assert!(!s.release(&g, &id("a")).unwrap());
        assert!(s.release(&g, &id("b")).unwrap());
        assert!(s.release(&g, &id("b")).unwrap());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn lock_times_out_with_try_again_later() {
        let root = tmp("lock");
        let held = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
        let t = Instant::now();
        let e = match Store::open(&root, "net", Duration::from_millis(100)) {
            Err(e) => e,
            Ok(_) => panic!("second lock must not be granted"),
        };
        assert_eq!(e.code, code::TRY_AGAIN_LATER);
        assert!(t.elapsed() >= Duration::from_millis(100));
        drop(held);
        Store::open(&root, "net", Duration::from_millis(100)).unwrap();
        fs::remove_dir_all(root).unwrap();
    }

    /// A DEL, CHECK or GC does not take the lock while an ADD waits for it,
    /// even when the lock is free at that moment: it gives up with 11 after
    /// its wait. Another ADD is not held back.
    #[test]
    fn others_do_not_take_the_lock_while_an_add_waits() {
        let root = tmp("addwaits");
        drop(Store::open(&root, "net", Duration::from_secs(1)).unwrap());
        let adds = open_lock(&root.join("net/lock.add"), true).unwrap();
        adds.lock_shared().unwrap(); // as an ADD waiting for the lock does
        let t = Instant::now();
        let e = match Store::open(&root, "net", Duration::from_millis(100)) {
            Err(e) => e,
            Ok(_) => panic!("the lock went to a DEL while an ADD waited"),
        };
        assert_eq!(e.code, code::TRY_AGAIN_LATER);
        assert!(e.msg.contains("pod starts (ADD)"), "{}", e.msg);
        assert!(t.elapsed() >= Duration::from_millis(100));
        drop(Store::open_for_add(&root, "net", Duration::from_millis(100)).unwrap());
        adds.unlock().unwrap();
        drop(Store::open(&root, "net", Duration::from_millis(100)).unwrap());
        fs::remove_dir_all(root).unwrap();
    }

    /// An ADD that has waited a while (backing off to 10 ms between tries)
    /// gets the lock before a DEL that arrives just as it is freed and
    /// tries every 200 µs: without the ADD's turn, the DEL would win.
    #[test]
    fn a_waiting_add_gets_the_lock_before_a_del_that_polls_faster() {
        use std::sync::{Arc, Mutex};
        let root = tmp("addfirst");
        let held = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let caller = |add: bool| {
            let (root, order) = (root.clone(), order.clone());
            std::thread::spawn(move || {
                let wait = Duration::from_secs(5);
                let s = if add {
                    Store::open_for_add(&root, "net", wait)
                } else {
                    Store::open(&root, "net", wait)
                }
                .unwrap();
                order.lock().unwrap().push(if add { "ADD" } else { "DEL" });
                std::thread::sleep(Duration::from_millis(20));
                drop(s);
            })
        };
        let add = caller(true);
        std::thread::sleep(Duration::from_millis(60));
        let del = caller(false);
        std::thread::sleep(Duration::from_millis(2));
        drop(held);
        add.join().unwrap();
        del.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["ADD", "DEL"]);
        fs::remove_dir_all(root).unwrap();
    }

    /// What a second first call sees while the first is still making the
    /// store: `<network>/` made, no lock file, no subdirectories yet.
    #[test]
    fn a_store_directory_without_lock_gets_its_subdirectories() {
        let root = tmp("firstrace");
        fs::create_dir_all(root.join("net")).unwrap();
        let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
        s.put(&record("c1")).unwrap();
        s.hold(&GroupKey::Policy("g".into()), &id("c1")).unwrap();
        assert_eq!(s.get(&id("c1")).unwrap(), Some(record("c1")));
        fs::remove_dir_all(root).unwrap();
    }

    /// A store written by the previous release (schema 1) is read as it is:
    /// nothing is set aside, and a group written back is schema 2.
    #[test]
    fn a_schema_1_store_is_read_not_set_aside() {
        let root = tmp("schema1");
        let s = Store::open(&root, "oldnet", Duration::from_secs(1)).unwrap();
        let fixture = |name: &str| {
            fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/schema1")
                    .join(name),
            )
            .unwrap()
        };
        fs::write(
            s.dir().join("attachments/c1@eth0.json"),
            fixture("record.json"),
        )
        .unwrap();
        fs::write(
            s.dir().join("nodes/steering.egress.json"),
            fixture("policy-group.json"),
        )
        .unwrap();
        let (records, corrupt) = s.list().unwrap();
        assert!(corrupt.is_empty(), "{corrupt:?}");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].schema, 1);
        let key = GroupKey::Policy("egress".into());
        assert_eq!(s.group_keys().unwrap(), vec![key.clone()]);
        let g = s.group(&key).unwrap().expect("the schema 1 group");
        assert_eq!(g.schema, 1);
        s.put_group(&NodeGroup {
            schema: SCHEMA,
            ..g
        })
        .unwrap();
        let text = fs::read_to_string(s.dir().join("nodes/steering.egress.json")).unwrap();
        assert!(
            text.contains("\"schema\": 2") || text.contains("\"schema\":2"),
            "{text}"
        );
        fs::remove_dir_all(root).unwrap();
    }
}
