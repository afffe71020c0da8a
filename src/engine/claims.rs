//! A table or rule priority is one network's (CONTRACT 4). A steering
//! policy's group lists what it takes on the node ([`NodeGroup::claims`]:
//! its table, its rules' priorities). When the group is first made in a
//! network's store, gwsteer looks for another user of each:
//!
//! - in the node scope of the state dir (`.node/holds/claim.table.<id>/`,
//!   holders `<network>@steering.<policy>`): another network under the same
//!   `stateDir`, named in the error;
//! - in the kernel: gwsteer's routes (protocol 211) in the table, or
//!   gwsteer's rules pointing at it or at a claimed priority, that this
//!   store did not make: another network under another `stateDir` (or this
//!   network's name under another one).
//!
//! Either refuses the ADD with code 7 before anything is changed. The rule
//! dump happens only then, never on later ADDs. Claims go with the group's
//! last holder.

use crate::error::{Error, Result, code};
use crate::kernel::Kernel;
use crate::model::{GroupKey, NodeGroup, Object, RTPROT_GWSTEER};
use crate::store::Store;

/// How a network's group holds a claim in the node scope.
fn holder(store: &Store, key: &GroupKey) -> String {
    format!("{}@{key}", store.network())
}

fn policy_name(key: &GroupKey) -> String {
    match key {
        GroupKey::Policy(name) => name.clone(),
        other => other.to_string(),
    }
}

fn what(claim: &GroupKey) -> String {
    match claim {
        GroupKey::TableClaim(t) => format!("table {t}"),
        GroupKey::PriorityClaim(p) => format!("rule priority {p}"),
        other => other.to_string(),
    }
}

fn refuse(group: &NodeGroup, msg: String) -> Error {
    Error::new(
        code::INVALID_CONFIG,
        format!(
            "steering policy \"{}\": {msg}; give each gwsteer network on a node its own tables and priorities",
            policy_name(&group.key)
        ),
    )
}

/// Take `group`'s claims, first made in `store`: refuse if another network
/// holds one (node scope) or, when `check_kernel`, if the kernel holds
/// gwsteer objects there that this store did not make. Called before the
/// group is recorded: a crash leaves at most a claim that the next ADD
/// takes again and that DEL or GC of the group sweeps ([`sweep`]).
pub fn take(
    store: &Store,
    kernel: &mut dyn Kernel,
    group: &NodeGroup,
    check_kernel: bool,
) -> Result<()> {
    if group.claims.is_empty() || store.is_node_scope() {
        return Ok(());
    }
    let me = holder(store, &group.key);
    let node = store.open_node_scope()?;
    // Claims this group already holds (its file was lost or set aside
    // since): gwsteer's objects in the table are its own leftovers, which
    // the group takes back, not another network's.
    let mut all_mine = true;
    for claim in &group.claims {
        let holders = node.holders(claim)?;
        all_mine &= holders.contains(&me);
        if let Some(other) = holders.into_iter().find(|h| *h != me) {
            let (network, policy) = other.split_once('@').unwrap_or((&other, "?"));
            return Err(refuse(
                group,
                format!(
                    "{} is already used by gwsteer network \"{network}\" ({policy}) on this node",
                    what(claim)
                ),
            ));
        }
    }
    if check_kernel && !all_mine {
        in_kernel(store, kernel, group)?;
    }
    // A claim is its link (`holds/claim.…`, listed by the node scope's
    // `group_keys`): no group file to write.
    for claim in &group.claims {
        node.hold_by(claim, &me)?;
    }
    Ok(())
}

/// gwsteer's routes in a claimed table, or gwsteer's rules pointing at it
/// or sitting at a claimed priority, made by someone other than this store
/// (which has no group for them yet).
fn in_kernel(store: &Store, kernel: &mut dyn Kernel, group: &NodeGroup) -> Result<()> {
    let tables: Vec<u32> = group
        .claims
        .iter()
        .filter_map(|c| match c {
            GroupKey::TableClaim(t) => Some(*t),
            _ => None,
        })
        .collect();
    let priorities: Vec<u32> = group
        .claims
        .iter()
        .filter_map(|c| match c {
            GroupKey::PriorityClaim(p) => Some(*p),
            _ => None,
        })
        .collect();
    let elsewhere = format!(
        "not made by network \"{}\" of state dir {} (another gwsteer network, or this one under another stateDir)",
        store.network(),
        store.dir().parent().unwrap_or(store.dir()).display()
    );
    for table in &tables {
        if let Some((route, _)) = kernel
            .table_routes(*table)?
            .into_iter()
            .find(|(_, proto)| *proto == RTPROT_GWSTEER)
        {
            return Err(refuse(
                group,
                format!("table {table} already holds gwsteer's {route}, {elsewhere}"),
            ));
        }
    }
    if let Some(rule) = kernel
        .gwsteer_rules_at(&tables, &priorities)?
        .into_iter()
        .next()
    {
        return Err(refuse(
            group,
            format!("gwsteer's {rule} uses its table or priority, {elsewhere}"),
        ));
    }
    Ok(())
}

/// Give back `claims` held by `group_key` of `store` (its last holder went);
/// `None` when the group's file is gone or unreadable: then every claim in
/// the node scope that this group holds. Returns the tables the group held
/// (so that a group whose file was lost can still find its routes).
pub fn release(
    store: &Store,
    group_key: &GroupKey,
    claims: Option<&[GroupKey]>,
) -> Result<Vec<u32>> {
    if !group_key.is_policy() || store.is_node_scope() || claims.is_some_and(<[_]>::is_empty) {
        return Ok(Vec::new());
    }
    let me = holder(store, group_key);
    let node = store.open_node_scope()?;
    let claims: Vec<GroupKey> = match claims {
        Some(c) => c.to_vec(),
        None => node
            .group_keys()?
            .into_iter()
            .filter(|k| matches!(k, GroupKey::TableClaim(_) | GroupKey::PriorityClaim(_)))
            .collect(),
    };
    let mut tables = Vec::new();
    for claim in &claims {
        if let GroupKey::TableClaim(t) = claim
            && node.holders(claim)?.contains(&me)
        {
            tables.push(*t);
        }
        if node.release_by(claim, &me)? {
            node.delete_group(claim)?;
        }
    }
    Ok(tables)
}

/// The routes and rules of a policy group whose file is lost (set aside as
/// corrupt) in `table`, which the group claimed and so no other network
/// uses: gwsteer's routes in it and gwsteer's rules pointing at it.
pub fn sweep_table(kernel: &mut dyn Kernel, table: u32) -> Result<()> {
    let mut errors = Vec::new();
    let routes = kernel.table_routes(table)?;
    for (spec, proto) in routes {
        if proto == RTPROT_GWSTEER {
            let obj = Object::node_route(spec);
            log::warn!("{obj}: its group's file was unreadable; removed as the table's owner");
            if let Err(e) = kernel.remove(&obj) {
                errors.push(e);
            }
        }
    }
    for (spec, proto) in kernel.rules_with_protocol(&[table])? {
        if proto == RTPROT_GWSTEER && spec.table == table {
            let obj = Object::node_rule(spec);
            log::warn!("{obj}: its group's file was unreadable; removed as the table's owner");
            if let Err(e) = kernel.remove(&obj) {
                errors.push(e);
            }
        }
    }
    match super::combine(errors) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
