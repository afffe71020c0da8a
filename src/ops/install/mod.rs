//! `gwsteer install`: puts gwsteer on a node — the binary into the CNI bin
//! dir, optionally a conflist of its own, and gwsteer chained after the
//! node's primary CNI in the file the runtime uses ([`chain`]) — and
//! `--uninstall` takes all of it away again. Every file is written as a temp
//! file in its target's directory and renamed over the target, so kubelet
//! and the runtime never see a half-written binary or conflist. Every input
//! is read and checked before the first write: a command that fails has
//! changed nothing.

mod chain;
mod files;
mod json;
mod sha256;
mod uninstall;

use std::path::{Path, PathBuf};

pub use chain::{ChainOutcome, Change, Plugin, STATE_DIR, Target, chain, patch};
pub use files::{first_conf, is_conf_name};
pub use uninstall::{Undone, uninstall};

use crate::error::{Error, Result};
use chain::Patch;
use json::Json;

const USAGE: &str = "usage: gwsteer install [--bin FILE] [--conflist FILE] [--patch auto|FILE]
                       [--plugin FILE] [--bin-dir DIR] [--conf-dir DIR]
       gwsteer install --uninstall [--bin-dir DIR] [--conf-dir DIR]

  --bin FILE       the gwsteer binary to install (default: this one)
  --conflist FILE  also write FILE (a complete conflist) into the conf dir
  --patch CONF     chain gwsteer after the primary in CONF (a file name in the
                   conf dir, or a path in it; `auto`: the file the runtime
                   uses, the first *.conf/*.conflist/*.json by name). A
                   .conflist gets the plugin appended to `plugins` (or its
                   gwsteer entry replaced, so reruns are idempotent); a
                   single-plugin .conf/.json becomes CONF-base.conflist with
                   the old plugin first and gwsteer second
  --plugin FILE    the gwsteer plugin object to chain (JSON; default
                   {\"type\": \"gwsteer\"}), validated as gwsteer's config
  --uninstall      remove the binary, the conflists --conflist wrote, and
                   undo every --patch: the original file comes back as it
                   was if nobody changed the patched one since, else only
                   the gwsteer entry is taken out of it
  --bin-dir DIR    the CNI bin dir (default $CNI_BIN_DIR, else /opt/cni/bin)
  --conf-dir DIR   the CNI conf dir (default $CNI_CONF_DIR, else /etc/cni/net.d)

What was changed is recorded in CONF_DIR/.gwsteer-install/ (a hidden
directory, which runtimes do not read) for --uninstall. Exit codes: 0 done
(or nothing to do), 1 failed (nothing was changed; for --uninstall: what
could be undone was), 2 usage error.";

/// What `gwsteer install` was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub bin: Option<PathBuf>,
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub conflist: Option<PathBuf>,
    pub patch: Option<Target>,
    pub plugin: Option<PathBuf>,
    pub uninstall: bool,
}

impl Options {
    /// The defaults: directories from `CNI_BIN_DIR` / `CNI_CONF_DIR`.
    pub fn from_env() -> Options {
        let dir = |var: &str, default: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(default))
        };
        Options {
            bin: None,
            bin_dir: dir("CNI_BIN_DIR", "/opt/cni/bin"),
            conf_dir: dir("CNI_CONF_DIR", "/etc/cni/net.d"),
            conflist: None,
            patch: None,
            plugin: None,
            uninstall: false,
        }
    }
}

/// argv after `install` → options; `Ok(None)` for `--help`.
pub fn parse(args: &[String], mut opts: Options) -> std::result::Result<Option<Options>, String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or_else(|| format!("{a} needs {what}"))
        };
        match a.as_str() {
            "--bin" => opts.bin = Some(value("a file")?.into()),
            "--conflist" => opts.conflist = Some(value("a file")?.into()),
            "--patch" => opts.patch = Some(Target::parse(&value("a conf file name or auto")?)),
            "--plugin" => opts.plugin = Some(value("a file")?.into()),
            "--bin-dir" => opts.bin_dir = value("a directory")?.into(),
            "--conf-dir" => opts.conf_dir = value("a directory")?.into(),
            "--uninstall" => opts.uninstall = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    Ok(Some(opts))
}

/// `gwsteer install …`: the exit code.
pub fn run(args: &[String]) -> i32 {
    let opts = match parse(args, Options::from_env()) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("gwsteer install: {e}\n\n{USAGE}");
            return 2;
        }
    };
    if opts.uninstall {
        let _lock = chain::lock(&opts.conf_dir);
        let undone = uninstall(&opts.bin_dir, &opts.conf_dir);
        for line in &undone.done {
            println!("gwsteer install: {line}");
        }
        for e in &undone.problems {
            eprintln!("gwsteer install: {e}");
        }
        return i32::from(!undone.problems.is_empty());
    }
    match install(&opts) {
        Ok(lines) => {
            for line in lines {
                println!("gwsteer install: {line}");
            }
            0
        }
        Err(e) => {
            eprintln!("gwsteer install: {e}");
            1
        }
    }
}

/// Installs what `opts` asks for: the binary, then `--conflist`, then the
/// patch. Everything is read and checked first; what was done, line by line.
pub fn install(opts: &Options) -> Result<Vec<String>> {
    let _lock = chain::lock(&opts.conf_dir)?;
    let bin_src = match &opts.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .map_err(|e| Error::io("finding this gwsteer binary (give --bin FILE)", e))?,
    };
    let binary = files::read(&bin_src).map_err(|e| {
        Error::new(
            e.code,
            format!("no gwsteer binary at {} ({})", bin_src.display(), e.msg),
        )
    })?;
    let conflist = opts
        .conflist
        .as_deref()
        .map(|p| Conflist::plan(p, &opts.conf_dir))
        .transpose()?;
    let plugin = match &opts.plugin {
        Some(p) => Plugin::from_file(p)?,
        None => Plugin::default(),
    };
    let mut patch = opts
        .patch
        .as_ref()
        .map(|t| Patch::plan(&opts.conf_dir, t, &plugin))
        .transpose()?;
    files::check_writable(&opts.bin_dir)?;
    if conflist.is_some() || patch.as_ref().is_some_and(|p| p.outcome().changed()) {
        files::check_writable(&opts.conf_dir)?;
    }

    let mut done = vec![install_binary(&binary, &opts.bin_dir)?];
    if let Some(c) = conflist {
        done.push(c.apply(&opts.conf_dir)?);
        // The new conflist may be the file the runtime now uses.
        if let Some(t) = &opts.patch {
            patch = Some(Patch::plan(&opts.conf_dir, t, &plugin)?);
        }
    }
    if let Some(p) = patch {
        done.push(p.apply()?.to_string());
    }
    Ok(done)
}

/// `bin_dir/gwsteer` with `binary`'s bytes, mode 0755; an identical file is
/// left alone.
fn install_binary(binary: &[u8], bin_dir: &Path) -> Result<String> {
    let target = bin_dir.join("gwsteer");
    if files::read_opt(&target)?.as_deref() == Some(binary)
        && files::mode(&target)? & 0o7777 == 0o755
    {
        return Ok(format!("{} is up to date", target.display()));
    }
    files::create_dir(bin_dir)?;
    files::write_atomic(&target, binary, 0o755)?;
    Ok(format!("installed {}", target.display()))
}

/// A `--conflist FILE` to write into the conf dir, checked.
struct Conflist {
    name: String,
    bytes: Vec<u8>,
}

impl Conflist {
    fn plan(path: &Path, conf_dir: &Path) -> Result<Conflist> {
        let bytes = files::read(path)?;
        let is_list = matches!(
            Json::parse(&bytes)
                .ok()
                .as_ref()
                .and_then(|d| d.get("plugins")),
            Some(Json::Array(_))
        );
        if !is_list {
            return Err(Error::config(format!(
                "{}: not a conflist (JSON with a plugins list)",
                path.display()
            )));
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::config(format!("{}: not a file name", path.display())))?
            .to_string();
        let target = conf_dir.join(&name);
        if files::lstat(&target)?.is_some() && !added(conf_dir)?.contains(&name) {
            return Err(Error::config(format!(
                "{} exists and is not gwsteer's; use --patch to chain into it",
                target.display()
            )));
        }
        Ok(Conflist { name, bytes })
    }

    fn apply(self, conf_dir: &Path) -> Result<String> {
        let target = conf_dir.join(&self.name);
        let state = chain::state_dir(conf_dir)?;
        files::create_dir(&state)?;
        let mut names = added(conf_dir)?;
        if !names.contains(&self.name) {
            // Recorded first: a crash after the write still lets --uninstall find it.
            names.push(self.name.clone());
            let text: String = names.iter().map(|n| format!("{n}\n")).collect();
            files::write_atomic(&state.join("added"), text.as_bytes(), 0o644)?;
        }
        if files::read_opt(&target)?.as_deref() == Some(&self.bytes[..]) {
            return Ok(format!("{} is up to date", target.display()));
        }
        files::write_atomic(&target, &self.bytes, 0o644)?;
        Ok(format!("wrote {}", target.display()))
    }
}

/// The conflists `--conflist` wrote, from the record.
fn added(conf_dir: &Path) -> Result<Vec<String>> {
    let path = conf_dir.join(STATE_DIR).join("added");
    Ok(files::read_opt(&path)?
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests;
