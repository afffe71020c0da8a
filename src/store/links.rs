//! Entries with one holder by design ([`GroupKey::has_one_holder`]): the
//! owner of a pod address's node objects (`holds/owner.<hash>`, see
//! `engine::owner`) and, in the node scope, the network of a table or rule
//! priority (`holds/claim.table.<id>`, `holds/claim.priority.<n>`, see
//! `engine::claims`). Such an entry is a symbolic link whose target is the
//! holder's name (`<cid>@<ifname>`, `<network>@<group>`): data, never
//! followed. It is made with one symlinkat(2), read with fstatat(2) and
//! readlinkat(2) (the link's owner is checked as a file's is), handed to a
//! new holder by renaming a fresh link over it, and removed with
//! unlinkat(2). The directory with one holder file these entries used to be
//! took nine system calls, a mkdir among them, to take and five to give
//! back: for an owner entry on every ADD and DEL, for the three claims of a
//! policy on its first pod's ADD and its last pod's DEL. A claim is its
//! link alone: the node scope lists claims from `holds/` ([`Store::group_keys`]),
//! where an older gwsteer also wrote an empty group file for each.
//!
//! Such a directory, written by an older gwsteer, is still read as the
//! holders it lists, and gives way to the link when the entry is taken
//! again, or goes with its last holder. What else sits at the name (a link
//! whose target is not a holder name, a file, a fifo) is set aside in
//! `corrupt/`, never followed, and the entry has no holder. An older
//! gwsteer that meets a link sets it aside the same way: an address with
//! no owner entry belongs to every record that lists it (as for records
//! written before owner entries existed), and a claim is taken again by
//! the next first ADD of its policy.

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

/// An entry with one holder, as found.
enum Found {
    None,
    Holder(String),
    /// A directory of holder files (an older gwsteer's).
    Dir,
}

impl Store {
    fn link_entry(&self, key: &GroupKey) -> Result<Found> {
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

    /// The holder of `key`: none or one (more only in an older gwsteer's
    /// directory).
    pub(super) fn link_holders(&self, key: &GroupKey) -> Result<Vec<String>> {
        match self.link_entry(key)? {
            Found::None => Ok(Vec::new()),
            Found::Holder(holder) => Ok(vec![holder]),
            Found::Dir => self.dir_holders(key),
        }
    }

    /// `holder` holds `key` from now on, whoever did before.
    pub(super) fn link_hold(&self, key: &GroupKey, holder: &str) -> Result<()> {
        let name = key.to_string();
        let path = self.path(Sub::Holds, &name);
        let write_error = |e| Error::io(format!("writing {}", path.display()), e);
        // The usual case, an entry nobody holds: one symlinkat(2).
        if file::make_link(&self.holds, &name, holder).map_err(write_error)? {
            crate::fault::state_changed(&format_args!("wrote {} -> {holder}", path.display()));
            return Ok(());
        }
        let made = match self.link_entry(key)? {
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
            // only by hand. Replaced like any other holder's.
            file::replace_link(&self.holds, &name, holder).map_err(write_error)?;
        }
        crate::fault::state_changed(&format_args!("wrote {} -> {holder}", path.display()));
        Ok(())
    }

    /// `holder` gives up `key` if it holds it; true when nobody holds it
    /// any more.
    pub(super) fn link_release(&self, key: &GroupKey, holder: &str) -> Result<bool> {
        let name = key.to_string();
        match self.link_entry(key)? {
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
