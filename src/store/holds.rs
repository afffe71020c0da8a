//! Holder files: `holds/<key>/<holder>`, one empty file per attachment
//! (or network group) that needs group `<key>`. A `holds/<key>` that is
//! not a directory of ours is set aside, never entered, and made again
//! from the records. Kinds with one holder by design (owner entries,
//! table and priority claims) are a link each instead (`links.rs`).

use std::fs::File;

use super::{Store, Sub, file, set_aside_in};
use crate::error::{Error, Result, code};
use crate::model::{AttachmentId, GroupKey};

impl Store {
    /// `holds/<key>/`, made with `create`. One that is not a directory of
    /// ours (a file, a symlink, another owner's) is set aside, never
    /// followed, and made again from the records that hold `key` (in a
    /// network's store; the node scope's holders are networks' groups,
    /// which `reconcile` holds again).
    fn holds_dir(&self, key: &GroupKey, create: bool) -> Result<Option<File>> {
        let name = key.to_string();
        let path = self.path(Sub::Holds, &name);
        let open = |create: bool| {
            file::open_dir(&self.holds, &name, create)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))
        };
        let why = match open(create)? {
            file::Dir::Missing => return Ok(None),
            file::Dir::Ours(d) => return Ok(Some(d)),
            file::Dir::NotOurs(why) => why,
        };
        self.set_aside(Sub::Holds, &name, why)?;
        let holders: Vec<String> = if self.is_node_scope() {
            Vec::new()
        } else {
            let (records, _) = self.list()?;
            records
                .iter()
                .filter(|r| r.holds.contains(key))
                .map(|r| r.id.stem())
                .collect()
        };
        log::warn!(
            "group {key}: {} holder(s) made again from the records",
            holders.len()
        );
        if holders.is_empty() && !create {
            return Ok(None);
        }
        let file::Dir::Ours(dir) = open(true)? else {
            return Err(Error::new(
                code::IO,
                format!("{} is replaced as fast as it is set aside", path.display()),
            ));
        };
        for holder in &holders {
            self.touch_holder(key, &dir, holder)?;
        }
        Ok(Some(dir))
    }

    /// Make holder file `holder` in `dir` (`holds/<key>/`); an entry there
    /// that is not a regular file of ours is set aside first.
    fn touch_holder(&self, key: &GroupKey, dir: &File, holder: &str) -> Result<()> {
        let path = self.path(Sub::Holds, &format!("{key}/{holder}"));
        let prefix = format!("holds/{key}/");
        for _ in 0..2 {
            match file::touch(dir, holder) {
                Ok(None) => return Ok(()),
                Ok(Some(why)) => {
                    set_aside_in(&self.net, &self.dir, (dir, &prefix), holder, why)?;
                }
                Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
            }
        }
        Err(Error::new(
            code::IO,
            format!("{} is replaced as fast as it is set aside", path.display()),
        ))
    }

    /// Record that `id` needs group `key`.
    pub fn hold(&self, key: &GroupKey, id: &AttachmentId) -> Result<()> {
        self.hold_by(key, &id.stem())
    }

    /// Record that `holder` (a file name) needs group `key`; for a kind
    /// with one holder, that `holder` is it from now on.
    pub fn hold_by(&self, key: &GroupKey, holder: &str) -> Result<()> {
        if key.has_one_holder() {
            return self.link_hold(key, holder);
        }
        let dir = self
            .holds_dir(key, true)?
            .ok_or_else(|| Error::new(code::IO, format!("holders of {key} vanished while made")))?;
        self.touch_holder(key, &dir, holder)?;
        crate::fault::state_changed(&format_args!(
            "wrote {}",
            self.path(Sub::Holds, &format!("{key}/{holder}")).display()
        ));
        Ok(())
    }

    /// Drop `id`'s hold on `key`; true when nobody holds the group any more.
    pub fn release(&self, key: &GroupKey, id: &AttachmentId) -> Result<bool> {
        self.release_by(key, &id.stem())
    }

    /// Drop `holder`'s hold on `key`; true when nobody holds the group any more.
    pub fn release_by(&self, key: &GroupKey, holder: &str) -> Result<bool> {
        if key.has_one_holder() {
            return self.link_release(key, holder);
        }
        self.dir_release_by(key, holder)
    }

    /// [`Store::release_by`] in `holds/<key>/`.
    pub(super) fn dir_release_by(&self, key: &GroupKey, holder: &str) -> Result<bool> {
        let Some(dir) = self.holds_dir(key, false)? else {
            return Ok(true);
        };
        self.unlink_holder(key, &dir, holder)?;
        // "Am I the last?" without listing the directory: rmdir succeeds only
        // when it is empty, and the kernel stops at the first entry it finds.
        // (read_dir asks for 32 KiB of entries at once: with 1000 holders on
        // tmpfs that is ~0.25 ms per DEL.) The next hold re-creates it.
        let name = key.to_string();
        match file::rmdir_if_empty(&self.holds, &name) {
            Ok(true) => {
                crate::fault::state_changed(&format_args!("removed holders of {key}"));
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => Err(Error::io(
                format!("removing {}", self.path(Sub::Holds, &name).display()),
                e,
            )),
        }
    }

    fn unlink_holder(&self, key: &GroupKey, dir: &File, holder: &str) -> Result<()> {
        let path = self.path(Sub::Holds, &format!("{key}/{holder}"));
        match file::unlink(dir, holder) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                let prefix = format!("holds/{key}/");
                let why = "a directory, not a regular file".to_string();
                set_aside_in(&self.net, &self.dir, (dir, &prefix), holder, why)?;
            }
            Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
        }
        crate::fault::state_changed(&format_args!("removed {}", path.display()));
        Ok(())
    }

    /// True when no attachment holds group `key`.
    pub fn unheld(&self, key: &GroupKey) -> Result<bool> {
        if key.has_one_holder() {
            return Ok(self.link_holders(key)?.is_empty());
        }
        match self.holds_dir(key, false)? {
            None => Ok(true),
            Some(dir) => Ok(self
                .names(&dir, &self.path(Sub::Holds, &key.to_string()), true)?
                .is_empty()),
        }
    }

    /// Attachments holding group `key` (for show/GC; not on the hot path).
    pub fn holders(&self, key: &GroupKey) -> Result<Vec<String>> {
        if key.has_one_holder() {
            return self.link_holders(key);
        }
        self.dir_holders(key)
    }

    /// [`Store::holders`] in `holds/<key>/`.
    pub(super) fn dir_holders(&self, key: &GroupKey) -> Result<Vec<String>> {
        let Some(dir) = self.holds_dir(key, false)? else {
            return Ok(Vec::new());
        };
        let mut names = self.names(&dir, &self.path(Sub::Holds, &key.to_string()), false)?;
        names.sort();
        Ok(names)
    }

    /// Remove a holder file by its name (as returned by [`Store::holders`]),
    /// in the store only: a holder name is one directory entry.
    pub fn drop_holder(&self, key: &GroupKey, holder: &str) -> Result<()> {
        if holder.contains('/') || holder == ".." || holder == "." {
            return Err(Error::new(
                code::STATE,
                format!("{holder:?} is not a holder file name"),
            ));
        }
        if key.has_one_holder() {
            return self.link_release(key, holder).map(|_| ());
        }
        self.dir_drop_holder(key, holder)
    }

    /// [`Store::drop_holder`] in `holds/<key>/`.
    pub(super) fn dir_drop_holder(&self, key: &GroupKey, holder: &str) -> Result<()> {
        match self.holds_dir(key, false)? {
            Some(dir) => self.unlink_holder(key, &dir, holder),
            None => Ok(()),
        }
    }

    /// Is `holder` (a holder file name) an attachment with a record?
    pub fn has_record_stem(&self, holder: &str) -> bool {
        !holder.contains('/')
            && file::stat_entry(&self.attachments, &format!("{holder}.json"))
                .ok()
                .flatten()
                .is_some()
    }
}
