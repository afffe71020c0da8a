//! `gwsteer install --uninstall`: the conf dir as it was before gwsteer, then
//! the binary goes (in this order, so no pod starts with a chain that names
//! a binary that is gone). A problem with one file is reported and the rest
//! is still undone; that file, its record and the binary stay for a rerun.

use std::path::{Path, PathBuf};

use super::chain::{is_gwsteer, records, state_dir, wrote};
use super::files::{self, read, read_opt, remove, write_atomic};
use super::json::Json;
use super::sha256;
use crate::error::{Error, Result};

/// What uninstalling did, line by line, and what it could not do.
#[derive(Debug, Default)]
pub struct Undone {
    pub done: Vec<String>,
    pub problems: Vec<Error>,
}

impl Undone {
    fn note(&mut self, step: Result<Option<String>>) {
        match step {
            Ok(Some(line)) => self.done.push(line),
            Ok(None) => {}
            Err(e) => self.problems.push(e),
        }
    }
}

/// Undoes every patch and `--conflist` recorded in `conf_dir`, then removes
/// `bin_dir/gwsteer`.
pub fn uninstall(bin_dir: &Path, conf_dir: &Path) -> Undone {
    let mut undone = Undone::default();
    match state_dir(conf_dir) {
        Ok(state) => undo_records(&state, conf_dir, &mut undone),
        Err(e) => undone.problems.push(e),
    }
    let bin = bin_dir.join("gwsteer");
    if undone.problems.is_empty() {
        undone.note(remove(&bin).map(|gone| gone.then(|| format!("removed {}", bin.display()))));
    } else if bin.exists() {
        // A conf file that could not be undone may still name it.
        undone.done.push(format!(
            "kept {}: a conf file may still chain gwsteer",
            bin.display()
        ));
    }
    undone
}

fn undo_records(state: &Path, conf_dir: &Path, undone: &mut Undone) {
    match records(state) {
        Ok(list) => {
            for (name, record) in list {
                let step = unpatch(conf_dir, &name, &record);
                let ok = step.is_ok();
                undone.note(step);
                if ok {
                    undone.note(remove_record(&record).map(|()| None));
                }
            }
        }
        Err(e) => undone.problems.push(e),
    }
    let added = state.join("added");
    match read_opt(&added) {
        Ok(Some(list)) => {
            for name in String::from_utf8_lossy(&list)
                .lines()
                .filter(|n| !n.is_empty())
            {
                let path = conf_dir.join(name);
                undone.note(
                    remove(&path).map(|gone| gone.then(|| format!("removed {}", path.display()))),
                );
            }
            undone.note(remove(&added).map(|_| None));
        }
        Ok(None) => {}
        Err(e) => undone.problems.push(e),
    }
    // Empty now unless a problem kept a record; then it stays.
    let _ = std::fs::remove_dir(state);
}

/// Puts one patched file back: byte for byte when nobody wrote it since
/// gwsteer did, else only gwsteer's entries are taken out of it.
fn unpatch(conf_dir: &Path, name: &str, record: &Path) -> Result<Option<String>> {
    let name_path = conf_dir.join(name);
    let Some(out) = wrote(record)? else {
        return Ok(None);
    };
    let out_path = conf_dir.join(&out);
    let Some(current) = read_opt(&out_path)? else {
        // The primary deleted it: gwsteer does not bring it back.
        return Ok(None);
    };
    let sha =
        read_opt(&record.join("sha"))?.map(|b| String::from_utf8_lossy(&b).trim().to_string());
    if sha.as_deref() == Some(sha256::hex(&current).as_str()) {
        let orig_path = record.join("orig");
        let orig = read(&orig_path)?;
        write_atomic(&name_path, &orig, files::mode(&orig_path)?)?;
        if out_path != name_path {
            remove(&out_path)?;
        }
        return Ok(Some(format!("restored {}", name_path.display())));
    }
    // Rewritten by someone else (the primary's agent): take out only ours.
    let mut doc = Json::parse(&current).map_err(|e| {
        Error::config(format!(
            "{}: not valid JSON ({e}): left as it is, with its record {}",
            out_path.display(),
            record.display()
        ))
    })?;
    let Some(Json::Array(list)) = doc.get_mut("plugins") else {
        return Ok(None);
    };
    if !list.iter().any(is_gwsteer) {
        return Ok(None);
    }
    list.retain(|p| !is_gwsteer(p));
    write_atomic(&out_path, &doc.to_pretty(), files::mode(&out_path)?)?;
    Ok(Some(format!(
        "removed the gwsteer entry from {}",
        out_path.display()
    )))
}

fn remove_record(record: &PathBuf) -> Result<()> {
    std::fs::remove_dir_all(record)
        .map_err(|e| Error::io(format!("removing {}", record.display()), e))
}
