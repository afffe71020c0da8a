//! `gwsteer cleanup`: everything gwsteer made on this node goes — every
//! network's attachments and groups (infrastructure included), the
//! node-wide state, and leftovers that carry gwsteer's marks (protocol 211
//! rules and routes, links with alias `gwsteer`, gwsteer's firewall tables).

use std::path::Path;

use crate::engine::{LOCK_WAIT, new_kernel, remove_group, teardown_stored};
use crate::error::Result;
use crate::model::{Object, RTPROT_GWSTEER};
use crate::store::{self, Store};

/// `gwsteer cleanup [--dry-run]`: remove everything gwsteer made on this
/// node, state included, and what a lost store left carrying its marks.
pub fn run(state_dir: &Path, dry_run: bool) -> Result<i32> {
    let mut kernel = new_kernel(None)?;
    let mut records_kernel = None;
    let mut tables = Vec::new();
    for network in store::networks(state_dir)? {
        let store = Store::open(state_dir, &network, LOCK_WAIT)?;
        let (records, _) = store.list()?;
        for r in &records {
            println!(
                "{}attachment {} of {network}",
                if dry_run {
                    "would remove "
                } else {
                    "removing "
                },
                r.id
            );
            if !dry_run {
                // Pod-side objects in the pod's namespace the record names.
                teardown_stored(&store, &mut records_kernel, r)?;
                store.delete(&r.id)?;
            }
        }
        for key in store.group_keys()? {
            if let Some(g) = store.group(&key)? {
                for o in &g.objects {
                    if let Object::Route { spec, .. } = o {
                        tables.push(spec.table);
                    }
                }
            }
            println!(
                "{}group {key} of {network}",
                if dry_run {
                    "would remove "
                } else {
                    "removing "
                }
            );
            if !dry_run {
                remove_group(&store, kernel.as_mut(), &key)?;
            }
        }
        if !dry_run {
            store.destroy()?;
        }
    }
    // Node-wide state (shared sysctls): the networks' groups released it
    // above, restoring values; what is left (a network's state removed by
    // hand) is restored and removed now.
    if state_dir.join(store::NODE_SCOPE).join("lock").exists() {
        let node = Store::open(state_dir, store::NODE_SCOPE, LOCK_WAIT)?;
        for key in node.group_keys()? {
            println!(
                "{}node-wide group {key}",
                if dry_run {
                    "would remove "
                } else {
                    "removing "
                }
            );
            if !dry_run {
                remove_group(&node, kernel.as_mut(), &key)?;
            }
        }
        if !dry_run {
            node.destroy()?;
        }
    }
    // Anything still carrying gwsteer's protocol number (from a lost record),
    // and gwsteer's routes in the tables such rules point at.
    for (rule, _) in kernel.rules_with_protocol(&[])? {
        if !matches!(rule.table, 0 | 253..=255) {
            tables.push(rule.table);
        }
        println!(
            "{}leftover {rule}",
            if dry_run {
                "would remove "
            } else {
                "removing "
            }
        );
        if !dry_run {
            kernel.remove(&Object::node_rule(rule))?;
        }
    }
    tables.sort_unstable();
    tables.dedup();
    for table in tables {
        for (route, proto) in kernel.table_routes(table)? {
            if proto == RTPROT_GWSTEER {
                println!(
                    "{}leftover {route}",
                    if dry_run {
                        "would remove "
                    } else {
                        "removing "
                    }
                );
                if !dry_run {
                    kernel.remove(&Object::node_route(route))?;
                }
            }
        }
    }
    // Links gwsteer made (alias "gwsteer") that no state lists any more:
    // the gateway network's bridge and VXLAN after a lost state store.
    let mut links = crate::kernel::rtnl::NetlinkKernel::new(None)?;
    for name in links.marked_links()? {
        println!(
            "{}leftover link {name}",
            if dry_run {
                "would remove "
            } else {
                "removing "
            }
        );
        if !dry_run {
            links.delete_marked_link(&name)?;
        }
    }
    // Firewall objects, when nftables is usable here (gwsteer-* tables and
    // gwsteer: RETURN rules in foreign iptables chains).
    let backend = crate::model::Backend::Nftables;
    match crate::kernel::nft::open(backend) {
        Ok(mut fw) => {
            for what in fw.cleanup(dry_run)? {
                let verb = if dry_run { "would remove" } else { "removed" };
                println!("{verb} {backend} {what}");
            }
        }
        Err(e) => log::debug!("{backend} not usable here ({e}); nothing of it to clean"),
    }
    Ok(0)
}
