//! Chaining gwsteer after the primary CNI in the file the runtime uses, and
//! the record that lets `--uninstall` put that file back.
//!
//! The record lives in `<conf dir>/.gwsteer-install/` (a hidden directory:
//! runtimes do not read it), one directory per file gwsteer chained into,
//! named after the primary's own file — the layout the shell installer
//! used, so that nodes it installed uninstall with this one:
//!
//! ```text
//! patch-10-podnet.conf/orig    the primary's file as it was before gwsteer (its mode kept)
//! patch-10-podnet.conf/wrote   the file gwsteer wrote: "10-podnet.conflist\n"
//! patch-10-podnet.conf/sha     SHA-256 (hex) of what gwsteer last wrote into it
//! added                        conflists `--conflist` wrote, one name a line
//! ```

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::files::{self, create_dir, lstat, read, write_atomic};
use super::json::Json;
use super::sha256;
use crate::error::{Error, Result};

/// The installer's record directory inside the conf dir.
pub const STATE_DIR: &str = ".gwsteer-install";

/// The gwsteer plugin object to chain: a JSON object with `"type": "gwsteer"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Plugin {
    object: Json,
    /// Where it came from, for errors: a file name or "the default plugin object".
    origin: String,
}

impl Default for Plugin {
    /// `{"type": "gwsteer"}`, as the shell installer chained without `--plugin`.
    fn default() -> Plugin {
        Plugin {
            object: Json::Object(vec![("type".into(), Json::String("gwsteer".into()))]),
            origin: "the default plugin object {\"type\": \"gwsteer\"}".into(),
        }
    }
}

impl Plugin {
    /// The object in `text`; `origin` names it in errors.
    pub fn from_json(text: &[u8], origin: &str) -> Result<Plugin> {
        let object = Json::parse(text)
            .map_err(|e| Error::config(format!("{origin}: not valid JSON: {e}")))?;
        if !matches!(object, Json::Object(_)) || !is_gwsteer(&object) {
            return Err(Error::config(format!(
                "{origin}: must be a JSON object with \"type\": \"gwsteer\""
            )));
        }
        Ok(Plugin {
            object,
            origin: origin.to_string(),
        })
    }

    pub fn from_file(path: &Path) -> Result<Plugin> {
        Plugin::from_json(&read(path)?, &path.display().to_string())
    }

    /// The object chained, as gwsteer reads it (keys sorted).
    pub fn value(&self) -> serde_json::Value {
        self.object.to_value()
    }

    /// The config gwsteer will be run with from `list` (the list's name and
    /// cniVersion, as libcni injects them), validated now: a policy error
    /// found at install time, not at the next pod's ADD.
    fn check_in(&self, list: &Json, file: &Path) -> Result<()> {
        let mut value = self.value();
        for key in ["cniVersion", "name"] {
            if let Some(v) = list.get(key) {
                value[key] = v.to_value();
            }
        }
        crate::config::Config::from_value(&value)
            .map(|_| ())
            .map_err(|e| {
                Error::config(format!(
                    "{}: {e} (as chained into {})",
                    self.origin,
                    file.display()
                ))
            })
    }
}

/// Which file to chain into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The file the runtime uses ([`files::first_conf`]).
    Auto,
    /// A file name in the conf dir, or a path to a file in it.
    Named(String),
}

impl Target {
    /// `auto`, or a file.
    pub fn parse(text: &str) -> Target {
        if text == "auto" {
            Target::Auto
        } else {
            Target::Named(text.to_string())
        }
    }
}

/// What chaining did to the conf dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The file already chained this very plugin object: nothing was written.
    Unchanged,
    /// gwsteer was appended to the file's `plugins`.
    Appended,
    /// The file's gwsteer entry was replaced by the plugin object.
    Replaced,
    /// A single-plugin file became this conflist; the old file was removed
    /// (it would sort first and win).
    Converted { from: PathBuf },
}

/// The file the runtime uses after chaining, and what changed in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainOutcome {
    pub file: PathBuf,
    pub change: Change,
}

impl ChainOutcome {
    /// Whether a file was written.
    pub fn changed(&self) -> bool {
        self.change != Change::Unchanged
    }
}

impl fmt::Display for ChainOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match &self.change {
            Change::Unchanged => write!(f, "{file} already chains gwsteer"),
            Change::Appended => write!(f, "chained gwsteer into {file}"),
            Change::Replaced => write!(f, "replaced the gwsteer entry in {file}"),
            Change::Converted { from } => {
                write!(
                    f,
                    "chained gwsteer into {file} (made from {})",
                    from.display()
                )
            }
        }
    }
}

/// Chains `plugin` after the primary in the file the runtime uses in
/// `conf_dir`. Cheap and safe to call again and again (a node agent does,
/// each time the primary rewrites its file): when the file already chains
/// this plugin object it reads, compares and writes nothing. Every write is
/// a temp file renamed over its target; the record for `--uninstall` is
/// written before the file it describes.
pub fn chain(conf_dir: &Path, plugin: &Plugin) -> Result<ChainOutcome> {
    patch(conf_dir, &Target::Auto, plugin)
}

/// [`chain`] into a chosen file (`--patch FILE`).
pub fn patch(conf_dir: &Path, target: &Target, plugin: &Plugin) -> Result<ChainOutcome> {
    let _lock = lock(conf_dir)?;
    Patch::plan(conf_dir, target, plugin)?.apply()
}

/// An exclusive lock on the conf dir itself (flock on the directory: no file
/// is created, so a call that changes nothing writes nothing), held while
/// the installer reads and writes there. `None` when the dir does not exist.
pub(super) fn lock(conf_dir: &Path) -> Result<Option<File>> {
    let dir = match File::open(conf_dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", conf_dir.display()), e)),
    };
    dir.lock()
        .map_err(|e| Error::io(format!("locking {}", conf_dir.display()), e))?;
    Ok(Some(dir))
}

pub(super) fn is_gwsteer(plugin: &Json) -> bool {
    plugin.get("type").and_then(Json::as_str) == Some("gwsteer")
}

/// The state dir, refused when it is anything but a directory.
pub(super) fn state_dir(conf_dir: &Path) -> Result<PathBuf> {
    let state = conf_dir.join(STATE_DIR);
    if let Some(meta) = lstat(&state)?
        && !meta.is_dir()
    {
        return Err(Error::config(format!(
            "{} is not a directory (the installer's record lives there)",
            state.display()
        )));
    }
    Ok(state)
}

/// Every record in `state`: (the primary's file name, its record dir).
pub(super) fn records(state: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = match std::fs::read_dir(state) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", state.display()), e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(file) = entry.file_name().into_string() else {
            continue;
        };
        if let Some(name) = file.strip_prefix("patch-")
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            out.push((name.to_string(), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The name a record's `wrote` file holds.
pub(super) fn wrote(record: &Path) -> Result<Option<String>> {
    Ok(files::read_opt(&record.join("wrote"))?.map(|b| {
        String::from_utf8_lossy(&b)
            .trim_end_matches('\n')
            .to_string()
    }))
}

/// Refuses a link, a directory or anything but a regular file at `path`;
/// whether a file is there.
fn regular_file(path: &Path) -> Result<bool> {
    let Some(meta) = lstat(path)? else {
        return Ok(false);
    };
    if meta.file_type().is_symlink() {
        let to = std::fs::read_link(path)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "?".into());
        return Err(Error::config(format!(
            "{} is a symbolic link (to {to}): gwsteer writes files by renaming over them, \
             which would replace the link; chain into the file it points at, or make it a file",
            path.display()
        )));
    }
    if !meta.is_file() {
        return Err(Error::config(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(true)
}

/// The file gwsteer writes for the primary's `name`: a conflist keeps its
/// name; a single-plugin `.conf` or `.json` becomes `<base>.conflist`.
fn output_name(conf_dir: &Path, name: &str) -> Result<String> {
    if name.ends_with(".conflist") {
        return Ok(name.to_string());
    }
    for ext in [".conf", ".json"] {
        if let Some(base) = name.strip_suffix(ext) {
            return Ok(format!("{base}.conflist"));
        }
    }
    Err(Error::config(format!(
        "{}: not a .conf, .conflist or .json file",
        conf_dir.join(name).display()
    )))
}

/// The conflist with gwsteer chained: a conflist's gwsteer entries are
/// replaced (so reruns are idempotent), else the plugin is appended; a
/// single plugin becomes a conflist with it first (its `cniVersion` and
/// `name` lifted to the list) and gwsteer second.
fn chained(mut doc: Json, plugin: &Json, file: &Path) -> Result<Json> {
    if let Some(list) = doc.get_mut("plugins") {
        let Json::Array(list) = list else {
            return Err(Error::config(format!(
                "{}: \"plugins\" is not a list",
                file.display()
            )));
        };
        if list.iter().any(is_gwsteer) {
            for p in list.iter_mut().filter(|p| is_gwsteer(p)) {
                *p = plugin.clone();
            }
        } else {
            list.push(plugin.clone());
        }
        return Ok(doc);
    }
    if doc.get("type").and_then(Json::as_str).is_none() {
        return Err(Error::config(format!(
            "{}: neither a conflist (\"plugins\") nor a plugin (\"type\")",
            file.display()
        )));
    }
    let mut list = Vec::new();
    for key in ["cniVersion", "name"] {
        if let Some(v) = doc.remove(key) {
            list.push((key.to_string(), v));
        }
    }
    list.push(("plugins".into(), Json::Array(vec![doc, plugin.clone()])));
    Ok(Json::Object(list))
}

/// Everything a patch will do, worked out without writing anything (so the
/// CLI can check all its inputs before its first write).
#[derive(Debug)]
pub(super) struct Patch {
    /// The primary's own file (the record's name) and the file written.
    name_path: PathBuf,
    out_path: PathBuf,
    record: PathBuf,
    /// The new contents of `out_path` and its mode; `None`: nothing to do.
    write: Option<(Vec<u8>, u32)>,
    /// The primary's unchained file to keep as the record's `orig`.
    save_orig: Option<(Vec<u8>, u32)>,
    outcome: ChainOutcome,
}

impl Patch {
    pub(super) fn plan(conf_dir: &Path, target: &Target, plugin: &Plugin) -> Result<Patch> {
        let state = state_dir(conf_dir)?;
        let picked = match target {
            Target::Auto => files::first_conf(conf_dir)?.ok_or_else(|| {
                Error::config(format!(
                    "no conf file (.conf, .conflist, .json) in {} to chain gwsteer into",
                    conf_dir.display()
                ))
            })?,
            Target::Named(text) => named(conf_dir, text)?,
        };
        // A file an earlier patch produced (X.conflist from X.conf) stands
        // for the original it came from, so that its record stays the one.
        let mut name = picked.clone();
        for (original, record) in records(&state)? {
            if wrote(&record)?.as_deref() == Some(picked.as_str()) {
                name = original;
                break;
            }
        }
        let out = output_name(conf_dir, &name)?;
        let name_path = conf_dir.join(&name);
        let out_path = conf_dir.join(&out);
        let record = state.join(format!("patch-{name}"));
        let record_exists = lstat(&record)?.is_some_and(|m| m.is_dir());
        let src = if regular_file(&name_path)? {
            name_path.clone()
        } else if record_exists && regular_file(&out_path)? {
            // Patched before, and the original is gone: re-patch our product.
            out_path.clone()
        } else {
            return Err(Error::config(format!(
                "{} does not exist",
                name_path.display()
            )));
        };
        regular_file(&out_path)?;
        let text = read(&src)?;
        let doc = Json::parse(&text)
            .map_err(|e| Error::config(format!("{}: not valid JSON: {e}", src.display())))?;
        if !matches!(doc, Json::Object(_)) {
            return Err(Error::config(format!(
                "{}: not a JSON object",
                src.display()
            )));
        }
        let entries: Vec<&Json> = match doc.get("plugins") {
            Some(Json::Array(list)) => list.iter().filter(|p| is_gwsteer(p)).collect(),
            _ => Vec::new(),
        };
        let was_chained = !entries.is_empty();
        let unchanged = src == out_path
            && was_chained
            && entries.iter().all(|p| p.to_value() == plugin.value());
        let new = chained(doc, &plugin.object, &src)?;
        plugin.check_in(&new, &out_path)?;
        let change = if unchanged {
            Change::Unchanged
        } else if src != out_path {
            Change::Converted { from: src.clone() }
        } else if was_chained {
            Change::Replaced
        } else {
            Change::Appended
        };
        let mode = files::mode(&src)?;
        // The original to restore: the first time, the file as found; later,
        // whenever its owner wrote it anew without gwsteer (a restarted
        // primary), that newer file — never one gwsteer wrote itself.
        let save_orig = (!unchanged && (!record_exists || (src == name_path && !was_chained)))
            .then(|| (text.clone(), mode));
        let new_bytes = new.to_pretty();
        Ok(Patch {
            name_path,
            out_path: out_path.clone(),
            record,
            write: (!unchanged).then_some((new_bytes, mode)),
            save_orig,
            outcome: ChainOutcome {
                file: out_path,
                change,
            },
        })
    }

    /// Writes what [`Patch::plan`] worked out: the record first, then the
    /// file, then the old single-plugin file goes.
    pub(super) fn apply(self) -> Result<ChainOutcome> {
        let Some((bytes, mode)) = &self.write else {
            return Ok(self.outcome);
        };
        create_dir(&self.record)?;
        if let Some((orig, orig_mode)) = &self.save_orig {
            write_atomic(&self.record.join("orig"), orig, *orig_mode)?;
        }
        let out_name = self
            .out_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        write_if_changed(
            &self.record.join("wrote"),
            format!("{out_name}\n").as_bytes(),
        )?;
        write_if_changed(
            &self.record.join("sha"),
            format!("{}\n", sha256::hex(bytes)).as_bytes(),
        )?;
        write_atomic(&self.out_path, bytes, *mode)?;
        if self.name_path != self.out_path {
            files::remove(&self.name_path)?;
        }
        Ok(self.outcome)
    }

    pub(super) fn outcome(&self) -> &ChainOutcome {
        &self.outcome
    }
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if files::read_opt(path)?.as_deref() == Some(bytes) {
        return Ok(());
    }
    write_atomic(path, bytes, 0o644)
}

/// A `--patch FILE` argument: a name in the conf dir, or a path whose
/// directory is the conf dir.
fn named(conf_dir: &Path, text: &str) -> Result<String> {
    let path = Path::new(text);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::config(format!("--patch {text}: not a file name")))?
        .to_string();
    if text.contains('/') {
        let dir = files::parent(path);
        let same = match (dir.canonicalize(), conf_dir.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !same {
            return Err(Error::config(format!(
                "--patch {text}: not a file in the conf dir {}",
                conf_dir.display()
            )));
        }
    }
    Ok(name)
}
