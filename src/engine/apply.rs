//! Making node groups and attachments real and taking them away, through
//! the [`Kernel`] door and the store: the first holder of a group makes it,
//! the last removes it (infrastructure stays); a changed group loses what it
//! no longer has; node-wide sysctls are read before they are first written
//! and restored by their last holder; an uplink gets back what it had.
//! Teardown never stops at the first failure.

use super::owner::Owner;
use crate::error::{Error, Result, code};
use crate::kernel::Kernel;
use crate::model::{GroupKey, Object, Presence, Restore, Side};
use crate::store::{NodeGroup, Record, Store};

/// Make a node group real: remove what an older version of the group had
/// and this one has not (config changed), record it, then ensure every
/// object. Ensuring is idempotent and cheap when the object exists (a
/// policy's table routes are read back and replaced only when missing or
/// drifted), so this also repairs drift; its cost does not depend on how
/// many pods hold the group. A node sysctl is shared by every network of the node: a network's
/// group holds it in the node scope ([`crate::store::NODE_SCOPE`]), whose
/// group reads the value before first writing it and keeps it, so that the
/// last holder of any network restores it.
pub fn ensure_group(store: &Store, kernel: &mut dyn Kernel, planned: &NodeGroup) -> Result<()> {
    let (stored, corrupt) = match store.group(&planned.key) {
        Ok(g) => (g, false),
        Err(e) if e.code == code::STATE => (None, true),
        Err(e) => return Err(e),
    };
    if stored.is_none() {
        // First made in this store: is its table or priority another
        // network's? (After a corrupt file was set aside, the kernel's
        // objects are this store's own: only the node scope is asked.)
        super::claims::take(store, kernel, planned, !corrupt)?;
    }
    let mut group = planned.clone();
    if let Some(old) = &stored {
        group.restore = old.restore.clone();
    }
    if stored.as_ref().map(|g| &g.objects) != Some(&group.objects) {
        if let Some(old) = &stored {
            // An object whose place the new group takes (a link with a new
            // MTU) is changed in place by `ensure`, not removed first.
            for obj in old
                .objects
                .iter()
                .filter(|o| !group.objects.iter().any(|n| n == *o || n.same_place(o)))
            {
                log::info!("group {}: config changed, removing {obj}", group.key);
                remove_member(store, kernel, old, obj)?;
            }
        }
        for obj in &group.objects {
            if let Object::Sysctl { key, value, .. } = obj
                && !via_node_scope(store, obj)
                && !group.restore.sysctls.contains_key(key)
            {
                let before = kernel.read_sysctl(key)?;
                if before != *value {
                    group.restore.sysctls.insert(key.clone(), before);
                }
            }
            if let Object::Uplink { dev, .. } = obj
                && !group.restore.uplinks.contains_key(dev)
                && let Some(saved) = kernel.capture_uplink(dev)?
            {
                group.restore.uplinks.insert(dev.clone(), saved);
            }
        }
        store.put_group(&group)?;
    }
    // A policy's owned table holds only that policy's routes, one per
    // destination, so reading it back costs the same at any number of
    // pods (one dump per family, however many destinations). A `replace`
    // would not: the kernel checks the gateway with a FIB lookup that walks
    // every policy rule on the node (5000 with 1000 dual-stack pods). So an
    // ADD that finds a route right leaves it alone, and one that finds it
    // missing or drifted still repairs it. A group first made here has
    // nothing to read back (a crash's leftovers aside, which `replace`
    // takes over): its routes are made without asking.
    let read_back: Vec<&Object> = if group.key.is_policy() && stored.is_some() {
        group
            .objects
            .iter()
            .filter(|o| matches!(o, Object::Route { .. }))
            .collect()
    } else {
        Vec::new()
    };
    let mut seen = kernel.observe_all(&read_back)?.into_iter();
    for obj in &group.objects {
        match obj {
            Object::Sysctl { key, .. } if via_node_scope(store, obj) => {
                let node = store.open_node_scope()?;
                let node_key = GroupKey::Sysctl(key.clone());
                node.hold_by(&node_key, &node_holder(store, &group.key))?;
                let shared = NodeGroup::new(node_key, vec![obj.clone()]);
                ensure_group(&node, kernel, &shared)?;
            }
            Object::Uplink { dev, .. } => {
                log::debug!("ensure {obj}");
                kernel.ensure_uplink(obj, group.restore.uplinks.get(dev))?;
            }
            Object::Route { .. } if !read_back.is_empty() => match seen.next() {
                Some(Presence::Present) => log::debug!("present {obj}"),
                _ => {
                    log::debug!("ensure {obj}");
                    kernel.ensure(obj)?;
                }
            },
            _ => {
                log::debug!("ensure {obj}");
                kernel.ensure(obj)?;
            }
        }
    }
    Ok(())
}

/// How a network's group `group_key` holds a node-scope group.
fn node_holder(store: &Store, group_key: &GroupKey) -> String {
    format!("{}@{group_key}", store.network())
}

/// A node sysctl in a network's group is made through the node scope.
fn via_node_scope(store: &Store, obj: &Object) -> bool {
    matches!(
        obj,
        Object::Sysctl {
            side: Side::Node,
            ..
        }
    ) && !store.is_node_scope()
}

/// Remove one object of `group`: a shared sysctl is released in the node
/// scope (and restored there by its last holder); anything else is removed.
fn remove_member(
    store: &Store,
    kernel: &mut dyn Kernel,
    group: &NodeGroup,
    obj: &Object,
) -> Result<()> {
    match obj {
        // (A group that kept its own restore value restores it itself.)
        Object::Sysctl { key, .. }
            if via_node_scope(store, obj) && !group.restore.sysctls.contains_key(key) =>
        {
            let node = store.open_node_scope()?;
            let node_key = GroupKey::Sysctl(key.clone());
            if node.release_by(&node_key, &node_holder(store, &group.key))? {
                remove_group(&node, kernel, &node_key)
            } else {
                log::info!("sysctl {key}: still needed by another network, left as is");
                Ok(())
            }
        }
        _ => remove_object(kernel, obj, &group.restore),
    }
}

/// Remove one node-level object; a sysctl is put back to the value it had
/// before gwsteer set it (and left alone if gwsteer found it set already).
fn remove_object(kernel: &mut dyn Kernel, obj: &Object, restore: &Restore) -> Result<()> {
    match obj {
        Object::Sysctl { key, side, .. } => match restore.sysctls.get(key) {
            Some(before) => {
                log::info!("restoring sysctl {key} = {before}");
                kernel.ensure(&Object::Sysctl {
                    key: key.clone(),
                    value: before.clone(),
                    side: *side,
                })
            }
            None => Ok(()),
        },
        Object::Uplink { dev, .. } => kernel.release_uplink(obj, restore.uplinks.get(dev)),
        _ => kernel.remove(obj),
    }
}

/// Remove a node group's objects and its record.
pub fn remove_group(store: &Store, kernel: &mut dyn Kernel, key: &GroupKey) -> Result<()> {
    let group = match store.group(key) {
        Ok(g) => g,
        Err(e) if e.code == code::STATE => None,
        Err(e) => return Err(e),
    };
    if let Some(group) = &group {
        let mut errors = Vec::new();
        for obj in group.objects.iter().rev() {
            log::debug!("remove {obj} (last holder of {key} gone)");
            if let Err(e) = remove_member(store, kernel, group, obj) {
                errors.push(e);
            }
        }
        if let Some(e) = combine(errors) {
            return Err(e);
        }
    }
    let tables = super::claims::release(store, key, group.as_ref().map(|g| g.claims.as_slice()))?;
    if group.is_none() {
        // The group's file is gone (set aside as corrupt): what it made
        // can still be found in the table it claimed.
        for table in tables {
            super::claims::sweep_table(kernel, table)?;
        }
    }
    store.delete_group(key)
}

/// A pod-side object whose pod namespace is gone is gone with it.
fn gone_with_netns(obj: &Object, err: &Error) -> bool {
    obj.side() == Side::Pod && err.code == code::UNKNOWN_CONTAINER
}

/// Undo everything a record says: per-pod objects it still owns (one a
/// newer ADD took over is left to that attachment), then holds (removing
/// groups nobody holds any more). Never stops at the first error; the
/// record is left for a retry when anything failed.
pub fn teardown(store: &Store, kernel: &mut dyn Kernel, record: &Record) -> Result<()> {
    let mut errors = Vec::new();
    // Owner entries this teardown held and gave up, nobody holding them
    // since: the same address's other objects are this record's (nothing
    // takes an entry under the network's lock), not looked up again.
    let mut given_up: Vec<GroupKey> = Vec::new();
    for obj in record.objects.iter().rev() {
        let key = super::owner::tracked(obj)
            .then(|| GroupKey::owner_of(obj))
            .filter(|k| !given_up.contains(k));
        let owner = match key {
            Some(_) => super::owner::owner(store, &record.id, obj),
            None => Ok(Owner::Mine { entry: false }),
        };
        let held = match owner {
            Ok(Owner::Mine { entry }) => entry,
            Ok(Owner::Other(holder)) => {
                log::info!("{obj}: owned by {holder} (made by a newer ADD), left to it");
                continue;
            }
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        log::debug!("remove {obj}");
        match kernel.remove(obj) {
            Ok(()) => {}
            Err(e) if gone_with_netns(obj, &e) => {}
            Err(e) => {
                errors.push(e);
                continue;
            }
        }
        // Also without an entry of its own: a killed DEL may have left the
        // entry's directory behind, empty.
        if let Some(key) = key {
            match super::owner::release(store, &record.id, obj) {
                Ok(true) if held => given_up.push(key),
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
    }
    for key in &record.holds {
        match store.release(key, &record.id) {
            Ok(true) if key.is_infrastructure() => {
                log::info!(
                    "group {key}: last holder gone; infrastructure stays until `gwsteer cleanup`"
                );
            }
            Ok(true) => {
                if let Err(e) = remove_group(store, kernel, key) {
                    errors.push(e);
                }
            }
            Ok(false) => {}
            Err(e) => errors.push(e),
        }
    }
    match combine(errors) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One error out of several: the first one's code, every message.
pub fn combine(errors: Vec<Error>) -> Option<Error> {
    let mut iter = errors.into_iter();
    let first = iter.next()?;
    let rest: Vec<String> = iter.map(|e| e.msg).collect();
    if rest.is_empty() {
        return Some(first);
    }
    let mut msg = first.msg;
    for m in rest {
        msg.push_str("; ");
        msg.push_str(&m);
    }
    Some(Error { msg, ..first })
}
