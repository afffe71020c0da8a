//! Owner entries ([`GroupKey::Owner`], see `engine::owner`): who owns the
//! per-pod node objects of one pod address. An entry is the symbolic link
//! `holds/owner.<hash>` whose target is the owning attachment's holder
//! name (`<cid>@<ifname>`): data, never followed. It is made with one
//! symlinkat(2), read with fstatat(2) and readlinkat(2) (the link's owner
//! is checked as a file's is), handed to a new owner by
//! renaming a fresh link over it, and removed with unlinkat(2). An owner
//! entry has one holder by design; the directory with one holder file it
//! used to be took nine system calls to claim an address (and two
//! directory operations) and five to release it, on every ADD and DEL.
//!
//! Such a directory, written by an older gwsteer, is still read as the
//! holders it lists, and gives way to the link when an ADD claims the
//! address, or goes when its last holder releases it. What else sits at
//! the name (a link whose target is not a holder name, a file, a fifo) is
//! set aside in `corrupt/`, never followed, and the address has no owner.
//! An older gwsteer that meets a link sets it aside the same way and
//! treats the address as unowned, as for records written before owner
//! entries existed.

use super::file::{self, Link};
use super::{Store, Sub};
use crate::error::{Error, Result};
use crate::model::GroupKey;

/// A holder name as gwsteer writes them: `<cid>@<ifname>`, one path
/// component.
fn holder_name(target: &str) -> bool {
    !target.is_empty()
        && target.len() <= 255
        && target.contains('@')
        && !target.contains('/')
        && !target.contains('\0')
        && target != "."
        && target != ".."
}

/// An owner entry, as found.
enum Found {
    None,
    Holder(String),
    /// A directory of holder files (an older gwsteer's).
    Dir,
}

impl Store {
    fn owner_entry(&self, key: &GroupKey) -> Result<Found> {
        let name = key.to_string();
        let why = match file::read_link(&self.holds, &name).map_err(|e| {
            Error::io(
                format!("reading {}", self.path(Sub::Holds, &name).display()),
                e,
            )
        })? {
            Link::Missing => return Ok(Found::None),
            Link::Dir => return Ok(Found::Dir),
            Link::To(holder) if holder_name(&holder) => return Ok(Found::Holder(holder)),
            Link::To(target) => format!("a symbolic link to {target:?}, not a holder name"),
            Link::NotOurs(why) => why,
        };
        self.set_aside(Sub::Holds, &name, why)?;
        Ok(Found::None)
    }

    /// The holder of owner entry `key`: none or one (more only in an older
    /// gwsteer's directory).
    pub(super) fn owner_holders(&self, key: &GroupKey) -> Result<Vec<String>> {
        match self.owner_entry(key)? {
            Found::None => Ok(Vec::new()),
            Found::Holder(holder) => Ok(vec![holder]),
            Found::Dir => self.dir_holders(key),
        }
    }

    /// `holder` owns what `key` stands for from now on, whoever did before.
    pub(super) fn owner_hold(&self, key: &GroupKey, holder: &str) -> Result<()> {
        let name = key.to_string();
        let path = self.path(Sub::Holds, &name);
        let write_error = |e| Error::io(format!("writing {}", path.display()), e);
        // The usual case, an address nobody owns: one symlinkat(2).
        if file::make_link(&self.holds, &name, holder).map_err(write_error)? {
            crate::fault::state_changed(&format_args!("wrote {} -> {holder}", path.display()));
            return Ok(());
        }
        let made = match self.owner_entry(key)? {
            Found::Holder(h) if h == holder => return Ok(()),
            Found::None => file::make_link(&self.holds, &name, holder),
            Found::Holder(_) => file::replace_link(&self.holds, &name, holder).map(|()| true),
            Found::Dir => {
                // Its holders go, and with the last one the directory.
                for old in self.dir_holders(key)? {
                    self.dir_release_by(key, &old)?;
                }
                file::make_link(&self.holds, &name, holder)
            }
        }
        .map_err(write_error)?;
        if !made {
            // Made between the read and the link: under the store's lock,
            // only by hand. Replaced like any other owner's.
            file::replace_link(&self.holds, &name, holder).map_err(write_error)?;
        }
        crate::fault::state_changed(&format_args!("wrote {} -> {holder}", path.display()));
        Ok(())
    }

    /// `holder` gives up owner entry `key` if it holds it; true when
    /// nobody holds it any more.
    pub(super) fn owner_release(&self, key: &GroupKey, holder: &str) -> Result<bool> {
        let name = key.to_string();
        match self.owner_entry(key)? {
            Found::None => Ok(true),
            Found::Holder(h) if h == holder => {
                self.remove(Sub::Holds, &name)?;
                Ok(true)
            }
            Found::Holder(_) => Ok(false),
            Found::Dir => self.dir_release_by(key, holder),
        }
    }
}
