//! A table or priority is one network's: claims in the node scope and in
//! the kernel, against the in-memory kernel.

use std::time::Duration;

use super::fake::{FakeKernel, TempDir};
use super::{ensure_group, remove_group};
use crate::error::code;
use crate::kernel::Kernel as _;
use crate::model::{
    AttachmentId, GroupKey, NextHop, NodeGroup, Object, RTPROT_GWSTEER, RouteKind, RouteSpec,
};
use crate::store::Store;

fn route_spec(table: u32, via: &str) -> RouteSpec {
    RouteSpec {
        dst: "0.0.0.0/0".parse().unwrap(),
        table,
        kind: RouteKind::Unicast,
        nexthops: vec![NextHop {
            via: via.parse().unwrap(),
            dev: None,
            weight: 1,
        }],
        dev: None,
        metric: None,
    }
}

/// Policy `name` with its route in `table`, claiming the table and
/// `priority`.
fn policy(name: &str, table: u32, priority: u32, via: &str) -> NodeGroup {
    let mut g = NodeGroup::new(
        GroupKey::Policy(name.into()),
        vec![Object::node_route(route_spec(table, via))],
    );
    g.claims = vec![
        GroupKey::TableClaim(table),
        GroupKey::PriorityClaim(priority),
    ];
    g
}

fn add(store: &Store, kernel: &mut FakeKernel, group: &NodeGroup) -> crate::error::Result<()> {
    let id = AttachmentId {
        container_id: "c1".into(),
        ifname: "eth0".into(),
    };
    store.hold(&group.key, &id)?;
    ensure_group(store, kernel, group)
}

#[test]
fn a_table_or_priority_of_another_network_is_refused_naming_it_until_it_goes() {
    let dir = TempDir::new();
    let mut kernel = FakeKernel::new();
    let oam = policy("oam", 100, 1000, "10.30.0.1");
    {
        let first = Store::open(dir.path(), "first", Duration::from_secs(5)).unwrap();
        add(&first, &mut kernel, &oam).unwrap();
    }
    let second = Store::open(dir.path(), "second", Duration::from_secs(5)).unwrap();
    for (group, what) in [
        (policy("other", 100, 1100, "10.30.0.9"), "table 100"),
        (
            policy("other", 101, 1000, "10.30.0.9"),
            "rule priority 1000",
        ),
    ] {
        let e = add(&second, &mut kernel, &group).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(
            e.msg.contains(what) && e.msg.contains("network \"first\" (steering.oam)"),
            "{e}"
        );
        // Nothing of the first network's was touched.
        assert_eq!(
            kernel.present(),
            vec!["inet route default table 100 via 10.30.0.1"]
        );
    }
    drop(second);
    let first = Store::open(dir.path(), "first", Duration::from_secs(5)).unwrap();
    remove_group(&first, &mut kernel, &oam.key).unwrap();
    drop(first);
    let second = Store::open(dir.path(), "second", Duration::from_secs(5)).unwrap();
    // The claim went with the first network's group.
    kernel.calls.clear();
    add(
        &second,
        &mut kernel,
        &policy("other", 100, 1000, "10.30.0.9"),
    )
    .unwrap();
    assert_eq!(
        kernel.present(),
        vec!["inet route default table 100 via 10.30.0.9"]
    );
    // The kernel was asked once, when the group was first made; a second
    // holder's ADD dumps nothing.
    assert!(kernel.position("rules_with_protocol [100]").is_some());
    kernel.calls.clear();
    add(
        &second,
        &mut kernel,
        &policy("other", 100, 1000, "10.30.0.9"),
    )
    .unwrap();
    assert!(
        !kernel
            .calls
            .iter()
            .any(|c| c.starts_with("rules_with_protocol") || c.starts_with("table_routes")),
        "{:?}",
        kernel.calls
    );
}

/// Another state dir shares no files: gwsteer's routes in the table that
/// this store did not make give the other user away.
#[test]
fn gwsteer_routes_in_the_table_that_this_store_did_not_make_refuse_it() {
    let dir = TempDir::new();
    let mut kernel = FakeKernel::new();
    kernel
        .foreign_routes
        .push((route_spec(100, "10.30.0.7"), RTPROT_GWSTEER));
    let store = Store::open(dir.path(), "net", Duration::from_secs(5)).unwrap();
    let e = add(&store, &mut kernel, &policy("oam", 100, 1000, "10.30.0.1")).unwrap_err();
    assert_eq!(e.code, code::INVALID_CONFIG);
    assert!(
        e.msg.contains("table 100") && e.msg.contains("another stateDir"),
        "{e}"
    );
    assert!(kernel.calls_to("ensure").is_empty(), "{:?}", kernel.calls);
    // Someone else's routes (another protocol) are imposters for CHECK and
    // reconcile, not another gwsteer network.
    kernel.foreign_routes = vec![(route_spec(100, "10.30.0.7"), 4)];
    add(&store, &mut kernel, &policy("oam", 100, 1000, "10.30.0.1")).unwrap();
}

/// A policy group's file that no longer reads: its last holder still
/// removes gwsteer's routes and rules of the table it claimed.
#[test]
fn the_last_holder_of_a_corrupt_group_sweeps_its_claimed_table() {
    let dir = TempDir::new();
    let mut kernel = FakeKernel::new();
    let store = Store::open(dir.path(), "net", Duration::from_secs(5)).unwrap();
    let oam = policy("oam", 100, 1000, "10.30.0.1");
    add(&store, &mut kernel, &oam).unwrap();
    let fwmark = Object::node_rule(crate::model::RuleSpec {
        family: crate::model::Family::V4,
        priority: 1000,
        src: None,
        dst: None,
        fwmark: Some(0x14),
        fwmask: None,
        iif: None,
        table: 100,
    });
    kernel.ensure(&fwmark).unwrap();
    std::fs::write(
        store.dir().join("nodes/steering.oam.json"),
        "{\"schema\": 2,",
    )
    .unwrap();
    remove_group(&store, &mut kernel, &oam.key).unwrap();
    assert!(kernel.present().is_empty(), "{:?}", kernel.present());
    let node = store.open_node_scope().unwrap();
    assert!(node.group_keys().unwrap().is_empty());
}

/// A policy group whose file was set aside (corrupt) while its claims stay
/// held by the same network: the next ADD takes back its own routes in the
/// table instead of taking them for another network's.
#[test]
fn a_group_whose_file_was_lost_takes_back_its_own_table() {
    let dir = TempDir::new();
    let mut kernel = FakeKernel::new();
    let store = Store::open(dir.path(), "net", Duration::from_secs(5)).unwrap();
    let oam = policy("oam", 100, 1000, "10.30.0.1");
    add(&store, &mut kernel, &oam).unwrap();
    // The group file goes (set aside by `show`, or lost); its route and
    // claims stay.
    std::fs::remove_file(store.dir().join("nodes/steering.oam.json")).unwrap();
    kernel
        .foreign_routes
        .push((route_spec(100, "10.30.0.1"), RTPROT_GWSTEER));
    add(&store, &mut kernel, &oam).unwrap();
    assert!(store.group(&oam.key).unwrap().is_some());
    // Another network's claim still refuses it.
    let other = Store::open(dir.path(), "other", Duration::from_secs(5)).unwrap();
    let e = add(&other, &mut kernel, &policy("oam", 100, 1010, "10.30.0.1")).unwrap_err();
    assert!(e.msg.contains("\"net\""), "{e}");
}

/// A claim is its link alone (`holds/claim.…` in the node scope): a
/// policy's first ADD writes no group file for it, the node scope still
/// lists it (GC, reconcile, cleanup), and the policy's last holder takes
/// it away. A claim an older gwsteer wrote (an empty group file and a
/// holder directory) is listed and released the same way.
#[test]
fn a_claim_is_its_link_and_an_older_claim_is_still_released() {
    let dir = TempDir::new();
    let mut kernel = FakeKernel::new();
    let store = Store::open(dir.path(), "net", Duration::from_secs(5)).unwrap();
    let oam = policy("oam", 100, 1000, "10.30.0.1");
    add(&store, &mut kernel, &oam).unwrap();
    let node_dir = dir.path().join(crate::store::NODE_SCOPE);
    let files: Vec<_> = std::fs::read_dir(node_dir.join("nodes"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(files.is_empty(), "{files:?}");
    let node = store.open_node_scope().unwrap();
    assert_eq!(
        node.group_keys().unwrap(),
        [GroupKey::TableClaim(100), GroupKey::PriorityClaim(1000)]
    );
    drop(node);
    remove_group(&store, &mut kernel, &oam.key).unwrap();
    let node = store.open_node_scope().unwrap();
    assert!(node.group_keys().unwrap().is_empty());
    drop(node);

    // As an older gwsteer left it: a group file and a holder directory.
    use std::os::unix::fs::PermissionsExt;
    let old = GroupKey::TableClaim(100);
    let json = serde_json::to_vec(&NodeGroup::new(old.clone(), Vec::new())).unwrap();
    std::fs::write(node_dir.join("nodes/claim.table.100.json"), json).unwrap();
    let held = node_dir.join("holds/claim.table.100");
    std::fs::create_dir(&held).unwrap();
    std::fs::set_permissions(&held, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(held.join("net@steering.oam"), b"").unwrap();
    let node = store.open_node_scope().unwrap();
    assert_eq!(node.group_keys().unwrap(), std::slice::from_ref(&old));
    drop(node);
    add(&store, &mut kernel, &oam).unwrap();
    remove_group(&store, &mut kernel, &oam.key).unwrap();
    let node = store.open_node_scope().unwrap();
    assert!(node.group_keys().unwrap().is_empty());
    assert!(
        std::fs::read_dir(node_dir.join("holds"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(
        std::fs::read_dir(node_dir.join("nodes"))
            .unwrap()
            .next()
            .is_none()
    );
}
