//! The store's files, opened relative to directory descriptors that were
//! checked once, never through a symbolic link.
//!
//! The store is root's, the way sshd's StrictModes and systemd-tmpfiles
//! want it: every directory from `/` down to the state directory is owned
//! by root (or by the user gwsteer runs as) and writable by nobody else
//! unless it has the sticky bit (`/tmp` is a fine ancestor); the state
//! directory and every directory gwsteer makes in it are writable by
//! their owner only. A directory that is not is refused with an error that
//! names it. Inside, every file is opened with `O_NOFOLLOW` relative to its
//! directory's descriptor, temporary files with `O_EXCL` under a name
//! nobody can guess, and an entry that is not a regular file of ours
//! (symlink, fifo, directory, another owner) is never read: the caller sets
//! it aside.

use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::error::{Error, Result, code};

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Reading a record or opening a lock: a fifo must not block the open.
const FILE_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_CLOEXEC);

/// Files and directories of the store: 0600 and 0700.
const FILE_MODE: Mode = Mode::S_IRUSR.union(Mode::S_IWUSR);
const DIR_MODE: Mode = Mode::S_IRWXU;

/// Root, or the user gwsteer runs as (as sshd trusts root or the user).
pub(super) fn trusted(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

fn kind(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFLNK => "a symbolic link",
        SFlag::S_IFIFO => "a fifo",
        SFlag::S_IFSOCK => "a socket",
        _ => "a device",
    }
}

fn is(st: &FileStat, what: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == what
}

fn is_symlink<P: ?Sized + nix::NixPath>(dir: &File, name: &P) -> bool {
    nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| is(&st, SFlag::S_IFLNK))
}

/// Why a directory that sits above the state directory cannot be trusted.
fn ancestor_problem(st: &FileStat) -> Option<String> {
    let mode = st.st_mode & 0o7777;
    if !trusted(st.st_uid) {
        Some(format!("owned by uid {}, not root", st.st_uid))
    } else if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        Some(format!(
            "writable by group or others without the sticky bit (mode {mode:04o})"
        ))
    } else {
        None
    }
}

/// Why the state directory, or a directory of the store, cannot be trusted.
pub(super) fn private_problem(st: &FileStat) -> Option<String> {
    let mode = st.st_mode & 0o7777;
    if !is(st, SFlag::S_IFDIR) {
        Some(format!("{}, not a directory", kind(st)))
    } else if !trusted(st.st_uid) {
        Some(format!("owned by uid {}, not root", st.st_uid))
    } else if mode & 0o022 != 0 {
        Some(format!("writable by group or others (mode {mode:04o})"))
    } else {
        None
    }
}

fn refuse(code: u32, path: &Path, why: &str) -> Error {
    Error::new(
        code,
        format!(
            "state directory {}: {why}; the state store must be writable by root only \
             (every directory up to / root's, and not writable by others unless sticky)",
            path.display()
        ),
    )
}

/// Open the configured state directory, checking every directory from `/`
/// down (once per open, not per file). Missing directories are made (0700)
/// with `create`; without it, a state directory that does not exist (or is
/// not a directory) is `Ok(None)`: nothing was ever recorded there.
/// A directory others can write is refused with code 7 (the config's
/// `stateDir` is unsafe), naming it.
pub(super) fn open_state_dir(path: &Path, create: bool) -> Result<Option<File>> {
    let absolute = std::path::absolute(path)
        .map_err(|e| Error::io(format!("state directory {}", path.display()), e))?;
    let mut parts = Vec::new();
    for c in absolute.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_owned()),
            Component::RootDir | Component::CurDir => {}
            // Resolved below, as a symlink is.
            Component::ParentDir | Component::Prefix(_) => {
                return walk(&resolved(path, &absolute)?, create)?
                    .ok_or_else(|| symlink_raced(path));
            }
        }
    }
    match walk(&parts, create)? {
        Some(dir) => Ok(dir),
        // A symlink on the way (checked where it points, as the kernel's
        // protected_symlinks keeps others' links in sticky directories out).
        None => walk(&resolved(path, &absolute)?, create)?.ok_or_else(|| symlink_raced(path)),
    }
}

fn symlink_raced(path: &Path) -> Error {
    Error::new(
        code::IO,
        format!(
            "state directory {}: a symbolic link on the way changed while it was checked",
            path.display()
        ),
    )
}

/// The components of `absolute`, symlinks and `..` resolved in the longest
/// prefix that exists; the rest as given.
fn resolved(path: &Path, absolute: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut missing = Vec::new();
    let mut existing = absolute;
    let base = loop {
        match std::fs::canonicalize(existing) {
            Ok(p) => break p,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                match (existing.file_name(), existing.parent()) {
                    (Some(name), Some(parent)) => {
                        missing.push(name.to_owned());
                        existing = parent;
                    }
                    _ => return Err(Error::io(format!("state directory {}", path.display()), e)),
                }
            }
            Err(e) => return Err(Error::io(format!("state directory {}", path.display()), e)),
        }
    };
    let mut parts: Vec<std::ffi::OsString> = base
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            _ => None,
        })
        .collect();
    for name in missing.into_iter().rev() {
        if name == ".." {
            return Err(Error::config(format!(
                "stateDir {}: \"..\" below a directory that does not exist",
                path.display()
            )));
        }
        parts.push(name);
    }
    Ok(parts)
}

/// Walk `parts` from `/` without following a symlink, checking each
/// directory: `Ok(None)` when a component is a symlink (resolve, walk
/// again); `Ok(Some(None))` when the state directory is missing, or not a
/// directory, and `create` is false.
fn walk(parts: &[std::ffi::OsString], create: bool) -> Result<Option<Option<File>>> {
    let mut dir = File::open("/").map_err(|e| Error::io("opening /", e))?;
    let mut at = PathBuf::from("/");
    if let Some(why) = fstat(&dir).ok().and_then(|st| ancestor_problem(&st)) {
        return Err(refuse(code::INVALID_CONFIG, &at, &why));
    }
    for (i, name) in parts.iter().enumerate() {
        at.push(name);
        let last = i + 1 == parts.len();
        let fd = match openat(&dir, name.as_os_str(), DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => {
                match mkdirat(&dir, name.as_os_str(), DIR_MODE) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => {
                        return Err(Error::io(format!("creating {}", at.display()), e.into()));
                    }
                }
                openat(&dir, name.as_os_str(), DIR_FLAGS, Mode::empty())
                    .map_err(|e| Error::io(format!("opening {}", at.display()), e.into()))?
            }
            Err(Errno::ENOENT) if !create => return Ok(Some(None)),
            Err(Errno::ELOOP) => return Ok(None),
            Err(Errno::ENOTDIR) => {
                // O_DIRECTORY on a symlink says ENOTDIR, as on a file.
                if is_symlink(&dir, name.as_os_str()) {
                    return Ok(None);
                }
                if !create {
                    return Ok(Some(None));
                }
                return Err(refuse(code::INVALID_CONFIG, &at, "not a directory"));
            }
            Err(e) => return Err(Error::io(format!("opening {}", at.display()), e.into())),
        };
        let st = fstat(&fd).map_err(|e| Error::io(format!("{}", at.display()), e.into()))?;
        let problem = if last {
            private_problem(&st)
        } else {
            ancestor_problem(&st)
        };
        if let Some(why) = problem {
            return Err(refuse(code::INVALID_CONFIG, &at, &why));
        }
        dir = File::from(fd);
    }
    Ok(Some(Some(dir)))
}

/// A directory of the store, opened without following it.
pub(super) enum Dir {
    Missing,
    Ours(File),
    /// Not a directory of ours that nobody else can write: never entered.
    NotOurs(String),
}

/// Open directory `name` in `parent`, made (0700) where missing with
/// `create`, without following a symlink.
pub(super) fn open_dir(parent: &File, name: &str, create: bool) -> io::Result<Dir> {
    let fd = match openat(parent, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) if create => {
            match mkdirat(parent, name, DIR_MODE) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
            openat(parent, name, DIR_FLAGS, Mode::empty())?
        }
        Err(Errno::ENOENT | Errno::ENAMETOOLONG) => return Ok(Dir::Missing),
        Err(Errno::ELOOP) => return Ok(Dir::NotOurs("a symbolic link".into())),
        // O_DIRECTORY on a symlink says ENOTDIR, as on a file.
        Err(Errno::ENOTDIR) if is_symlink(parent, name) => {
            return Ok(Dir::NotOurs("a symbolic link".into()));
        }
        Err(Errno::ENOTDIR) => return Ok(Dir::NotOurs("not a directory".into())),
        Err(e) => return Err(e.into()),
    };
    match private_problem(&fstat(&fd)?) {
        Some(why) => Ok(Dir::NotOurs(why)),
        None => Ok(Dir::Ours(File::from(fd))),
    }
}

/// Open directory `name` of the store in `parent` ([`open_dir`]) and
/// refuse it (code 5, naming `path`) unless it is a directory of ours that
/// nobody else can write.
pub(super) fn private_dir(
    parent: &File,
    path: &Path,
    name: &str,
    create: bool,
) -> Result<Option<File>> {
    match open_dir(parent, name, create)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?
    {
        Dir::Missing => Ok(None),
        Dir::Ours(f) => Ok(Some(f)),
        Dir::NotOurs(why) => Err(refuse(code::IO, path, &why)),
    }
}

/// An entry of the store, opened without following it.
pub(super) enum Entry {
    Missing,
    /// The file and what `fstat` said of it when it was opened.
    File(File, FileStat),
    /// Not a regular file of ours: never read, set aside by the caller.
    NotOurs(String),
}

/// What a directory entry is, and that it is ours, without opening it.
pub(super) fn stat_entry(dir: &File, name: &str) -> io::Result<Option<FileStat>> {
    match nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT | Errno::ENAMETOOLONG) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Open file `name` in `dir` read-only, without following a symlink and
/// without blocking on a fifo; made (0600) where missing with `create`.
/// A name too long to exist is missing.
pub(super) fn open_entry(dir: &File, name: &str, create: bool) -> io::Result<Entry> {
    let flags = if create {
        FILE_FLAGS | OFlag::O_CREAT
    } else {
        FILE_FLAGS
    };
    let fd = match openat(dir, name, flags, FILE_MODE) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENAMETOOLONG) if !create => return Ok(Entry::Missing),
        Err(Errno::ELOOP) => return Ok(Entry::NotOurs("a symbolic link".into())),
        Err(Errno::ENXIO) => return Ok(Entry::NotOurs("a socket or device".into())),
        Err(e) => return Err(e.into()),
    };
    let st = fstat(&fd)?;
    if !is(&st, SFlag::S_IFREG) {
        return Ok(Entry::NotOurs(format!("{}, not a regular file", kind(&st))));
    }
    if !trusted(st.st_uid) {
        return Ok(Entry::NotOurs(format!(
            "owned by uid {}, not root",
            st.st_uid
        )));
    }
    Ok(Entry::File(File::from(fd), st))
}

/// The rest of `file`, which `fstat` said holds `size` bytes: read into a
/// buffer of that size in one go (plus a read that finds the end), without
/// asking the kernel for the size again.
pub(super) fn read_sized(mut file: &File, size: i64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0).saturating_add(1));
    loop {
        if bytes.len() == bytes.capacity() {
            bytes.reserve(4096);
        }
        let spare = bytes.capacity() - bytes.len();
        let start = bytes.len();
        bytes.resize(start + spare, 0);
        match io::Read::read(&mut file, &mut bytes[start..]) {
            Ok(0) => {
                bytes.truncate(start);
                return Ok(bytes);
            }
            Ok(n) => bytes.truncate(start + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => bytes.truncate(start),
            Err(e) => return Err(e),
        }
    }
}

/// Make an empty file `name` in `dir` (0600) if there is none; an entry
/// there that is not a regular file of ours is reported, not followed.
/// One mknodat(2) makes it without opening it (open, fstat and close took
/// three); only an entry already there is looked at.
pub(super) fn touch(dir: &File, name: &str) -> io::Result<Option<String>> {
    // Twice at most: an entry gone between the two calls (under the
    // store's lock, only by hand) is made on the second round.
    for _ in 0..2 {
        match nix::sys::stat::mknodat(dir, name, SFlag::S_IFREG, FILE_MODE, 0) {
            Ok(()) => return Ok(None),
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        match stat_entry(dir, name)? {
            Some(st) if is(&st, SFlag::S_IFREG) && trusted(st.st_uid) => return Ok(None),
            Some(st) if is(&st, SFlag::S_IFLNK) => return Ok(Some("a symbolic link".into())),
            Some(st) => {
                return Ok(Some(format!("{} owned by uid {}", kind(&st), st.st_uid)));
            }
            None => {}
        }
    }
    Ok(Some("removed as fast as it is made".into()))
}

/// A name for a temporary file that nobody can predict.
fn temp_name() -> String {
    let noise = RandomState::new().hash_one((std::process::id(), std::time::Instant::now()));
    format!(".tmp.{}.{noise:016x}", std::process::id())
}

/// Put something new at `name` in `dir` atomically: `make` makes it under
/// an unguessable temporary name (false when that name is taken: a fresh
/// one is tried), then it is renamed over `name` (which replaces a symlink
/// there, never follows it). On failure the temporary entry is removed.
fn via_temp(dir: &File, name: &str, make: impl Fn(&str) -> io::Result<bool>) -> io::Result<()> {
    for _ in 0..16 {
        let tmp = temp_name();
        let done = match make(&tmp) {
            Ok(false) => continue,
            Ok(true) => renameat(dir, tmp.as_str(), dir, name).map_err(io::Error::from),
            Err(e) => Err(e),
        };
        if done.is_err() {
            let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        return done;
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary name after 16 tries",
    ))
}

/// Write `bytes` to `name` in `dir` atomically ([`via_temp`]): a new
/// temporary file (`O_EXCL`, 0600) renamed over it.
pub(super) fn write_atomic(dir: &File, name: &str, bytes: &[u8]) -> io::Result<()> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    via_temp(dir, name, |tmp| match openat(dir, tmp, flags, FILE_MODE) {
        Ok(fd) => File::from(fd).write_all(bytes).map(|()| true),
        Err(Errno::EEXIST) => Ok(false),
        Err(e) => Err(e.into()),
    })
}

/// Can a file be made in `dir`? A new file (`O_EXCL`, never through a
/// symlink) written and removed.
pub(super) fn probe_writable(dir: &File) -> io::Result<()> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let name = temp_name();
    let fd = openat(dir, name.as_str(), flags, FILE_MODE)?;
    let written = File::from(fd).write_all(b"ok");
    let removed = unlinkat(dir, name.as_str(), UnlinkatFlags::NoRemoveDir);
    written?;
    Ok(removed?)
}

/// Remove file `name` from `dir` (a symlink itself, never its target);
/// absent is success.
pub(super) fn unlink(dir: &File, name: &str) -> io::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT | Errno::ENAMETOOLONG) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Remove directory `name` from `dir` if it is empty: `Ok(true)` when it is
/// gone (or was never there), `Ok(false)` when it still has entries.
pub(super) fn rmdir_if_empty(dir: &File, name: &str) -> io::Result<bool> {
    match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(true),
        Err(Errno::ENOTEMPTY | Errno::EEXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Move entry `name` of `dir` to `to` in `into` (never across file systems).
pub(super) fn rename(dir: &File, name: &str, into: &File, to: &str) -> io::Result<()> {
    Ok(renameat(dir, name, into, to)?)
}

/// The entries of `dir` (not `.` and `..`; names that are not UTF-8, which
/// gwsteer never makes, are skipped); with `first`, at most one.
pub(super) fn names(dir: &File, first: bool) -> io::Result<Vec<String>> {
    let d = nix::dir::Dir::openat(dir, ".", DIR_FLAGS, Mode::empty())?;
    let mut out = Vec::new();
    for entry in d {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if let Ok(name) = std::str::from_utf8(name) {
            out.push(name.to_owned());
            if first {
                break;
            }
        }
    }
    Ok(out)
}

/// What sits at the name of an entry with one holder (`links.rs`), read
/// without following it.
pub(super) enum Link {
    Missing,
    /// A symbolic link of ours, and its target (data, never a path).
    To(String),
    /// A directory: such an entry as an older gwsteer wrote it.
    Dir,
    /// Anything else: never read, set aside by the caller.
    NotOurs(String),
}

/// Read the symbolic link `name` in `dir` ([`Link`]).
pub(super) fn read_link(dir: &File, name: &str) -> io::Result<Link> {
    let Some(st) = stat_entry(dir, name)? else {
        return Ok(Link::Missing);
    };
    if is(&st, SFlag::S_IFDIR) {
        return Ok(Link::Dir);
    }
    if !is(&st, SFlag::S_IFLNK) {
        return Ok(Link::NotOurs(format!("{}, not a symbolic link", kind(&st))));
    }
    if !trusted(st.st_uid) {
        return Ok(Link::NotOurs(format!(
            "a symbolic link owned by uid {}, not root",
            st.st_uid
        )));
    }
    match nix::fcntl::readlinkat(dir, name) {
        Ok(target) => Ok(target.into_string().map_or_else(
            |_| Link::NotOurs("a symbolic link to a name that is not UTF-8".into()),
            Link::To,
        )),
        Err(Errno::ENOENT) => Ok(Link::Missing),
        Err(Errno::EINVAL) => Ok(Link::NotOurs("no longer a symbolic link".into())),
        Err(e) => Err(e.into()),
    }
}

/// Make the symbolic link `name` in `dir` with `target`: false when an
/// entry of that name exists (left as it is).
pub(super) fn make_link(dir: &File, name: &str, target: &str) -> io::Result<bool> {
    match nix::unistd::symlinkat(target, dir, name) {
        Ok(()) => Ok(true),
        Err(Errno::EEXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Replace `name` in `dir` (a symbolic link, or nothing) with a symbolic
/// link to `target` atomically ([`via_temp`]): a new link renamed over it.
pub(super) fn replace_link(dir: &File, name: &str, target: &str) -> io::Result<()> {
    via_temp(dir, name, |tmp| make_link(dir, tmp, target))
}
