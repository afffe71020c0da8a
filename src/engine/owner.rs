//! One kernel object, one owner (CONTRACT 4). Two live records can list the
//! same per-pod node object: a pod's address reused by a new pod after the
//! old pod's DEL never came. The newest ADD owns it; the older record loses
//! it, so its DEL, GC or a reconcile never takes it from the new pod.
//!
//! The owner of a per-pod node object is the one holder of the group
//! [`GroupKey::owner_of`] the object (`holds/owner.<hash>/<attachment>` in
//! the network's store; no group file), one per pod address (or host veth)
//! whatever the number of objects made for it; an older record keeps what
//! only it lists for that address. ADD claims every object of its
//! record: a single directory read per object, whatever the number of pods
//! on the node; only when another live attachment held the object (a reuse)
//! is that attachment's record read and rewritten without it. An object
//! with no owner entry (records written before owner entries existed) or
//! whose holders have no record any more belongs to every record that lists
//! it, as before.

use crate::error::{Result, code};
use crate::model::{AttachmentId, GroupKey, Object, Side};
use crate::store::{Record, Store};

/// Who owns a per-pod object, as a record sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This attachment: it may remove the object. `entry`: it holds the
    /// owner entry (to be released with the object).
    Mine { entry: bool },
    /// Another attachment with a record (holder name `<cid>@<ifname>`).
    Other(String),
}

/// Objects that get an owner entry: the ones in the node's namespace. A
/// pod's own namespace is the pod's alone.
pub fn tracked(obj: &Object) -> bool {
    obj.side() == Side::Node
}

/// The attachment a holder name (`<cid>@<ifname>`) stands for. Container
/// ids hold no `@`.
fn holder_id(holder: &str) -> Option<AttachmentId> {
    let (cid, ifname) = holder.split_once('@')?;
    Some(AttachmentId {
        container_id: cid.to_string(),
        ifname: ifname.to_string(),
    })
}

/// Make `record`'s attachment the owner of each of its per-pod node
/// objects. Called after the record is written and before the objects are
/// made, so a crash leaves a record whose DEL or GC releases what it
/// claimed. A previous owner with a record loses the object: its record is
/// rewritten without it, then its entry dropped.
///
/// The entry is per address: once the first object of an address is
/// claimed, this attachment is its one holder, so the address's other
/// objects are not looked at again (an older record keeps them, as
/// [`owner`] expects).
pub fn claim(store: &Store, record: &Record) -> Result<()> {
    let me = record.id.stem();
    let mut claimed: Vec<GroupKey> = Vec::new();
    for obj in record.objects.iter().filter(|o| tracked(o)) {
        let key = GroupKey::owner_of(obj);
        if claimed.contains(&key) {
            continue;
        }
        let holders = store.holders(&key)?;
        claimed.push(key.clone());
        if holders == [me.as_str()] {
            continue;
        }
        if !holders.contains(&me) {
            store.hold(&key, &record.id)?;
        }
        for other in holders.iter().filter(|h| **h != me) {
            if store.has_record_stem(other) {
                lose(store, other, obj)?;
            }
            store.drop_holder(&key, other)?;
        }
    }
    Ok(())
}

/// The attachment `holder` no longer owns `obj`: its record forgets it.
fn lose(store: &Store, holder: &str, obj: &Object) -> Result<()> {
    let Some(id) = holder_id(holder) else {
        return Ok(());
    };
    let record = match store.get(&id) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(()),
        // Unreadable: set aside by the store; nothing left to rewrite.
        Err(e) if e.code == code::STATE => return Ok(()),
        Err(e) => return Err(e),
    };
    if !record.objects.contains(obj) {
        return Ok(());
    }
    log::warn!(
        "{obj}: now owned by this attachment; {id} (a stale record: its DEL never came?) loses it"
    );
    let objects = record
        .objects
        .iter()
        .filter(|o| *o != obj)
        .cloned()
        .collect();
    store.put(&Record { objects, ..record })
}

/// Who owns `obj`, which `id`'s record lists.
pub fn owner(store: &Store, id: &AttachmentId, obj: &Object) -> Result<Owner> {
    if !tracked(obj) {
        return Ok(Owner::Mine { entry: false });
    }
    let me = id.stem();
    let holders = store.holders(&GroupKey::owner_of(obj))?;
    if holders.contains(&me) {
        return Ok(Owner::Mine { entry: true });
    }
    // The entry is per address: another attachment that holds it owns
    // `obj` only if its record lists `obj` too (a reused address where the
    // new pod needs the same rule); what only this record made for the
    // address is still this record's to remove.
    for other in holders.into_iter().filter(|h| store.has_record_stem(h)) {
        let lists_it = holder_id(&other)
            .map(|oid| match store.get(&oid) {
                Ok(Some(r)) => r.objects.contains(obj),
                _ => false,
            })
            .unwrap_or(false);
        if lists_it {
            return Ok(Owner::Other(other));
        }
    }
    Ok(Owner::Mine { entry: false })
}

/// After `obj` is removed: `id` gives up its owner entry; true when
/// nobody holds the entry any more.
pub fn release(store: &Store, id: &AttachmentId, obj: &Object) -> Result<bool> {
    store.release(&GroupKey::owner_of(obj), id)
}
