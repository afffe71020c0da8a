//! The store's lock: `lock` taken exclusively, ADDs first (see the module
//! docs of [`super`]), and a lock that means what it says.
//!
//! A lock file removed or replaced while held would let the next caller
//! lock a fresh file and run alongside the holder. So, once `flock` on
//! `lock` succeeds, the caller checks that the descriptor it locked is
//! still the file at the path (same device and inode), else it closes it
//! and tries again; and it also takes the network directory's own `flock`,
//! which no removal of a file can take away from the holder: a caller that
//! locked a new `lock` while the holder still has the directory waits, off
//! `lock`, like any other.

use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::AtFlags;
use nix::sys::stat::{FileStat, fstatat};

use super::file::{self, Entry};
use crate::error::{Error, Result, code};

/// Who is asking for a store's lock (see the module notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Turn {
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

/// Open (and make, with `create`) lock file `name` of `net` without
/// following a symlink; an entry there that is not a regular file of ours
/// is set aside (once) and a fresh one made. With the file, what `fstat`
/// said of it when it was opened (its device and inode never change).
fn open(
    net: &File,
    dir: &Path,
    name: &str,
    create: bool,
    set_aside: &dyn Fn(&str, String) -> Result<()>,
) -> Result<Option<(File, FileStat)>> {
    let path = dir.join(name);
    for _ in 0..2 {
        match file::open_entry(net, name, create) {
            Ok(Entry::File(f, st)) => return Ok(Some((f, st))),
            Ok(Entry::Missing) => return Ok(None),
            Ok(Entry::NotOurs(why)) => set_aside(name, why)?,
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        }
    }
    Err(Error::new(
        code::IO,
        format!("{} is replaced as fast as it is set aside", path.display()),
    ))
}

/// What a caller that just locked `lock` holds.
enum Held {
    /// The lock file at the path and the directory: the store is ours.
    Store,
    /// The file locked is no longer the one at the path.
    Stale,
    /// A holder of a removed or replaced lock file still has the directory.
    DirectoryBusy,
}

/// `locked` is the `fstat` of `lock` taken when it was opened.
fn confirm(net: &File, dir: &Path, lock: &File, locked: &FileStat) -> Result<Held> {
    let err =
        |e: nix::Error| Error::io(format!("checking {}", dir.join("lock").display()), e.into());
    let same = match fstatat(net, "lock", AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(at) => at.st_dev == locked.st_dev && at.st_ino == locked.st_ino,
        Err(nix::errno::Errno::ENOENT) => false,
        Err(e) => return Err(err(e)),
    };
    if !same {
        let _ = lock.unlock();
        log::warn!(
            "{} was removed or replaced while locked; locking the one there now",
            dir.join("lock").display()
        );
        return Ok(Held::Stale);
    }
    match net.try_lock() {
        Ok(()) => Ok(Held::Store),
        Err(TryLockError::WouldBlock) => {
            let _ = lock.unlock();
            Ok(Held::DirectoryBusy)
        }
        Err(TryLockError::Error(e)) => Err(Error::io(format!("locking {}", dir.display()), e)),
    }
}

/// Take the store's lock in `net` (the directory `dir`), waiting at most
/// `wait`: the locked `lock` file (the directory `net` is locked too) and
/// how long it took. A timeout is CNI error 11.
pub(super) fn take(
    net: &File,
    dir: &Path,
    wait: Duration,
    turn: Turn,
    set_aside: &dyn Fn(&str, String) -> Result<()>,
) -> Result<(File, Duration)> {
    let lock_path = dir.join("lock");
    let made = || -> Result<(File, FileStat)> {
        open(net, dir, "lock", true, set_aside)?
            .ok_or_else(|| Error::new(code::IO, format!("{} vanished", lock_path.display())))
    };
    let (mut lock, mut locked_st) = made()?;
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
    let open_adds =
        |create: bool| Ok(open(net, dir, "lock.add", create, set_aside)?.map(|(f, _)| f));
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
        let locked = match lock.try_lock() {
            Ok(()) if turn != Turn::AfterAdds => true,
            Ok(()) => {
                if adds.is_none() {
                    adds = open_adds(false)?;
                }
                match &adds {
                    // An ADD started waiting meanwhile: it goes first.
                    Some(a) if add_waiting(a)? => {
                        let _ = lock.unlock();
                        false
                    }
                    _ => true,
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
                false
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", lock_path.display()), e));
            }
        };
        if locked {
            match confirm(net, dir, &lock, &locked_st)? {
                Held::Store => break,
                Held::Stale => (lock, locked_st) = made()?,
                Held::DirectoryBusy => {}
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
    Ok((lock, backoff.start.elapsed()))
}
