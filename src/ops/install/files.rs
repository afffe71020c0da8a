//! The installer's file work: atomic writes (a temp file in the target's
//! directory, synced, renamed over the target, the directory synced), the
//! conf file the runtime uses, and reads that name the file they failed on.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};

/// The prefix of the installer's temp files. Runtimes never load them:
/// libcni reads only names ending in `.conf`, `.conflist` or `.json`, and a
/// temp name ends in `.tmp`.
pub const TEMP_PREFIX: &str = ".gwsteer-tmp.";

/// The extensions libcni loads from a conf dir (`libcni.ConfFiles`).
pub const CONF_EXTENSIONS: [&str; 3] = [".conf", ".conflist", ".json"];

fn temp_path(dir: &Path) -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    dir.join(format!(
        "{TEMP_PREFIX}{}.{}.{nanos:x}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The directory `path` is in (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `target` with permission bits `mode`: a temp file in
/// the same directory (so the rename is atomic), synced, then renamed over
/// the target. A reader sees the whole old file or the whole new one; on any
/// failure the temp file is removed and the target is as it was.
pub fn write_atomic(target: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = parent(target);
    let tmp = temp_path(dir);
    let written = (|| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        // The umask may have taken bits the caller asked for.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, target)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(format!("writing {}", target.display()), e));
    }
    sync_dir(dir);
    Ok(())
}

/// Makes a rename or an unlink in `dir` durable; best effort, as the shell
/// installer's `sync` was.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Removes `path`; a file already gone is fine.
pub fn remove(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {
            sync_dir(parent(path));
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// `path`'s contents; `None` when it does not exist.
pub fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

/// The permission bits of `path` (following links).
pub fn mode(path: &Path) -> Result<u32> {
    fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

/// What is at `path` without following a link: `None` when nothing is.
pub fn lstat(path: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Whether `name` is one libcni loads (by its extension, as `filepath.Ext`
/// sees it: the part from the last dot).
pub fn is_conf_name(name: &str) -> bool {
    let ext = name.rfind('.').map(|at| &name[at..]).unwrap_or("");
    CONF_EXTENSIONS.contains(&ext)
}

/// The file the runtime uses: of the conf dir's entries that libcni loads
/// (a `.conf`, `.conflist` or `.json` name that is not a directory), the
/// first by name in byte order, as `libcni.ConfFiles` + `sort.Strings` in
/// containerd's and CRI-O's loaders pick it. Hidden names count, as there.
pub fn first_conf(conf_dir: &Path) -> Result<Option<String>> {
    let entries = match fs::read_dir(conf_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", conf_dir.display()), e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", conf_dir.display()), e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !is_conf_name(&name) || entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        names.push(name);
    }
    names.sort();
    Ok(names.into_iter().next())
}

/// Whether this process may create files in `dir` (a read-only mount or an
/// immutable directory says no even to root). `dir` need not exist yet: then
/// its nearest existing ancestor is asked.
pub fn check_writable(dir: &Path) -> Result<()> {
    let mut at = dir;
    while !at.exists() {
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => return Ok(()),
        }
    }
    nix::unistd::access(
        at,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .map_err(|e| {
        Error::io(
            format!("{} is not writable", at.display()),
            io::Error::from_raw_os_error(e as i32),
        )
    })
}

/// Creates `dir` and its missing parents (mode 0755).
pub fn create_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}
