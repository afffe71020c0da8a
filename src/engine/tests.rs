//! The engine against an in-memory kernel ([`super::fake::FakeKernel`]) and
//! a state store in a temporary directory: no root, no namespaces.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::audit::{foreign_in_tables, owned_tables};
use super::fake::{FakeKernel, TempDir};
use super::{capture, combine, ensure_group, remove_group, teardown};
use crate::error::{Error, code};
use crate::model::{
    AttachmentId, Family, GroupKey, LinkKind, LinkSpec, NextHop, NodeGroup, Object, Record,
    RouteKind, RouteSpec, RuleSpec, SCHEMA, SavedRoute, SavedUplink, Side,
};
use crate::store::Store;

const SRC_VALID_MARK: &str = "net.ipv4.conf.all.src_valid_mark";

fn open(dir: &TempDir, network: &str) -> Store {
    Store::open(dir.path(), network, Duration::from_secs(5)).unwrap()
}

fn id(container: &str) -> AttachmentId {
    AttachmentId {
        container_id: container.into(),
        ifname: "net1".into(),
    }
}

fn record(container: &str, objects: Vec<Object>, holds: Vec<GroupKey>) -> Record {
    Record {
        schema: SCHEMA,
        network: "net".into(),
        id: id(container),
        netns: None,
        pod_namespace: None,
        pod_name: None,
        objects,
        holds,
        created: 0,
        notes: Vec::new(),
    }
}

/// What ADD does for each group of a pod: hold it, then make it real.
fn add(store: &Store, kernel: &mut FakeKernel, container: &str, group: &NodeGroup) {
    store.hold(&group.key, &id(container)).unwrap();
    ensure_group(store, kernel, group).unwrap();
}

fn rule_spec(priority: u32, from: &str, table: u32) -> RuleSpec {
    RuleSpec {
        family: Family::V4,
        priority,
        src: Some(from.parse().unwrap()),
        dst: None,
        fwmark: None,
        fwmask: None,
        iif: None,
        table,
    }
}

fn rule(priority: u32, from: &str, table: u32) -> Object {
    Object::node_rule(rule_spec(priority, from, table))
}

fn route_spec(dst: &str, table: u32, via: &str) -> RouteSpec {
    RouteSpec {
        dst: dst.parse().unwrap(),
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

fn route(dst: &str, table: u32, via: &str) -> Object {
    Object::node_route(route_spec(dst, table, via))
}

fn link(name: &str, kind: LinkKind, mtu: u32, master: Option<&str>) -> Object {
    Object::Link {
        link: LinkSpec {
            name: name.into(),
            kind,
            mtu: Some(mtu),
            master: master.map(Into::into),
        },
    }
}

fn vxlan() -> LinkKind {
    LinkKind::Vxlan {
        vni: 42,
        group: None,
        local: None,
        port: 4789,
        dev: None,
    }
}

fn pod_mtu(ifname: &str, mtu: u32, previous: Option<u32>) -> Object {
    Object::Mtu {
        side: Side::Pod,
        ifname: ifname.into(),
        mtu,
        previous,
    }
}

fn policy(name: &str, objects: Vec<Object>) -> NodeGroup {
    NodeGroup::new(GroupKey::Policy(name.into()), objects)
}

fn lines(objects: &[Object]) -> Vec<String> {
    objects.iter().map(ToString::to_string).collect()
}

fn sorted(items: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = items.iter().map(ToString::to_string).collect();
    out.sort();
    out
}

/// The `oam` policy of most tests: one rule, two routes in table 100.
fn oam() -> NodeGroup {
    policy(
        "oam",
        vec![
            rule(1000, "10.244.0.5/32", 100),
            route("0.0.0.0/0", 100, "10.30.0.1"),
            route("10.40.0.0/16", 100, "10.30.0.254"),
        ],
    )
}

#[test]
fn the_first_holder_makes_a_groups_objects_and_records_the_group() {
    let dir = TempDir::new();
    let store = open(&dir, "net");
    let mut kernel = FakeKernel::new();
    add(&store, &mut kernel, "a", &oam());
    assert_eq!(
        kernel.present(),
        sorted(&[
            "inet rule 1000: from 10.244.0.5 lookup 100",
            "inet route default table 100 via 10.30.0.1",
            "inet route 10.40.0.0/16 table 100 via 10.30.0.254",
        ])
    );
    assert_eq!(store.group(&oam().key).unwrap(), Some(oam()));
    assert!(kernel.calls_to("remove").is_empty(), "{:?}", kernel.calls);
}

#[test]
fn a_second_holder_adds_nothing_and_the_first_to_go_leaves_the_group() {
    let dir = TempDir::new();
    let store = open(&dir, "net");
    let mut kernel = FakeKernel::new();
    add(&store, &mut kernel, "a", &oam());
    let made = kernel.present();
    kernel.calls.clear();
    add(&store, &mut kernel, "b", &oam());
    // The routes are read back and found; only the rule is ensured again
    // (idempotent), nothing is removed, nothing new is made.
    assert_eq!(
        kernel.calls,
        [
            "observe_all of 2 object(s)",
            "observe inet route default table 100 via 10.30.0.1",
            "observe inet route 10.40.0.0/16 table 100 via 10.30.0.254",
            "ensure inet rule 1000: from 10.244.0.5 lookup 100",
        ]
    );
    assert_eq!(kernel.present(), made);

    kernel.calls.clear();
    teardown(&store, &mut kernel, &record("a", vec![], vec![oam().key])).unwrap();
    assert!(kernel.calls.is_empty(), "{:?}", kernel.calls);
    assert_eq!(kernel.present(), made);
    assert_eq!(store.group(&oam().key).unwrap(), Some(oam()));
    assert_eq!(store.holders(&oam().key).unwrap(), ["b@net1"]);
}

#[test]
fn the_last_holder_removes_a_group_and_infrastructure_stays() {
    let dir = TempDir::new();
    let store = open(&dir, "net");
    let mut kernel = FakeKernel::new();
    let gateway = NodeGroup::new(
        GroupKey::GatewayInfra,
        vec![link("gw0", LinkKind::Bridge, 1450, None)],
    );
    let vrf = NodeGroup::new(
        GroupKey::VrfInfra("vrf-oam".into()),
        vec![link("vrf-oam", LinkKind::Vrf { table: 10 }, 65575, None)],
    );
    for group in [&oam(), &gateway, &vrf] {
        add(&store, &mut kernel, "a", group);
        add(&store, &mut kernel, "b", group);
    }
    let holds = vec![oam().key, gateway.key.clone(), vrf.key.clone()];
    teardown(&store, &mut kernel, &record("a", vec![], holds.clone())).unwrap();
    kernel.calls.clear();
    teardown(&store, &mut kernel, &record("b", vec![], holds)).unwrap();
    // The policy's objects go in the reverse order they were made.
    assert_eq!(
        kernel.calls,
        [
            "remove inet route 10.40.0.0/16 table 100 via 10.30.0.254",
            "remove inet route default table 100 via 10.30.0.1",
            "remove inet rule 1000: from 10.244.0.5 lookup 100",
        ]
    );
    assert_eq!(
        kernel.present(),
        sorted(&[
            "link gw0 type bridge mtu 1450",
            "link vrf-oam type vrf table 10 mtu 65575",
        ])
    );
    assert_eq!(store.group(&oam().key).unwrap(), None);
    assert_eq!(store.group(&gateway.key).unwrap(), Some(gateway));
    assert_eq!(store.group(&vrf.key).unwrap(), Some(vrf));
}

#[test]
fn teardown_removes_a_records_objects_last_made_first() {
    let dir = TempDir::new();
    let store = open(&dir, "net");
    let mut kernel = FakeKernel::new();
    let objects = vec![
        pod_mtu("net1", 1450, Some(1500)),
        pod_mtu("eth0", 1400, None),
    ];
    for obj in &objects {
        crate::kernel::Kernel::ensure(&mut kernel, obj).unwrap();
    }
    kernel.calls.clear();
    teardown(&store, &mut kernel, &record("a", objects, vec![])).unwrap();
    assert_eq!(
        kernel.calls,
        [
            "remove pod link eth0 mtu 1400",
            "remove pod link net1 mtu 1450 (was 1500)",
        ]
    );
    assert!(kernel.present().is_empty());
}

#[test]
fn a_changed_plan_removes_what_is_gone_and_changes_links_in_place() {
    let dir = TempDir::new();
    let store = open(&dir, "net");
    let mut kernel = FakeKernel::new();
    let fdb = |dst: &str| Object::Fdb {
        dev: "vx0".into(),
        dst: dst.parse().unwrap(),
    };
    let before = NodeGroup::new(
        GroupKey::GatewayInfra,
        vec![
            link("gw0", LinkKind::Bridge, 1500, None),
            link("vx0", vxlan(), 1450, Some("gw0")),
            fdb("10.0.0.2"),
        ],
    );
    add(&store, &mut kernel, "a", &before);
    kernel.calls.clear();
    let after = NodeGroup::new(
        GroupKey::GatewayInfra,
        vec![
            link("gw0", LinkKind::Bridge, 1400, None),
            link("vx0", vxlan(), 1350, Some("gw0")),
            fdb("10.0.0.3"),
        ],
    );
    add(&store, &mut kernel, "a", &after);
    // What the new plan has not is removed first; the links, which only
    // changed their MTU, are changed in place, never removed.
    assert_eq!(
        kernel.calls,
        [
            "remove fdb 00:00:00:00:00:00 dev vx0 dst 10.0.0.2",
            "observe_all of 0 object(s)",
            "ensure link gw0 type bridge mtu 1400",
            "ensure link vx0 type vxlan id 42 dstport 4789 mtu 1350 master gw0",
            "ensure fdb 00:00:00:00:00:00 dev vx0 dst 10.0.0.3",
        ]
    );
    assert_eq!(
        kernel.present(),
        sorted(&[
            "link gw0 type bridge mtu 1400",
            "link vx0 type vxlan id 42 dstport 4789 mtu 1350 master gw0",
            "fdb 00:00:00:00:00:00 dev vx0 dst 10.0.0.3",
        ])
    );
    assert_eq!(store.group(&after.key).unwrap(), Some(after));
}

#[test]
fn a_policys_routes_are_read_back_and_only_missing_or_drifted_ones_ensured() {
    let dir = TempDir::new();
    let store = open(&dir, "net");
    let mut kernel = FakeKernel::new();
    let group = policy(
        "oam",
        vec![
            rule(1000, "10.244.0.5/32", 100),
            route("0.0.0.0/0", 100, "10.30.0.1"),
            route("10.40.0.0/16", 100, "10.30.0.254"),
            route("10.50.0.0/16", 100, "10.30.0.254"),
        ],
    );
    add(&store, &mut kernel, "a", &group);
    // Since: present as planned; drifted (another gateway in its slot);
    // missing.
    kernel
        .objects
        .remove(&route("10.40.0.0/16", 100, "10.30.0.254"));
    kernel
        .objects
        .insert(route("10.40.0.0/16", 100, "10.30.0.99"));
    kernel
        .objects
        .remove(&route("10.50.0.0/16", 100, "10.30.0.254"));
    kernel.calls.clear();
    add(&store, &mut kernel, "b", &group);
    assert_eq!(
        kernel.calls_to("ensure"),
        [
            "ensure inet rule 1000: from 10.244.0.5 lookup 100",
            "ensure inet route 10.40.0.0/16 table 100 via 10.30.0.254",
            "ensure inet route 10.50.0.0/16 table 100 via 10.30.0.254",
        ]
    );
    assert_eq!(kernel.calls[0], "observe_all of 3 object(s)");
    let mut planned = lines(&group.objects);
    planned.sort();
    assert_eq!(kernel.present(), planned);
}

/// A policy's group first made in the store reads nothing back: its
/// routes are made (`replace` takes over a crash's leftovers).
#[test]
fn a_policy_group_first_made_ensures_its_routes_without_reading_them_back() {
    let dir = TempDir::new();
    let store = open(&dir, "net");
    let mut kernel = FakeKernel::new();
    let group = policy(
        "oam",
        vec![
            rule(1000, "10.244.0.5/32", 100),
            route("0.0.0.0/0", 100, "10.30.0.1"),
        ],
    );
    kernel.objects.insert(route("0.0.0.0/0", 100, "10.30.0.1"));
    add(&store, &mut kernel, "a", &group);
    assert!(
        kernel
            .calls
            .contains(&"observe_all of 0 object(s)".to_string()),
        "{:?}",
        kernel.calls
    );
    assert_eq!(
        kernel.calls_to("ensure"),
        [
            "ensure inet rule 1000: from 10.244.0.5 lookup 100",
            "ensure inet route default table 100 via 10.30.0.1",
        ]
    );
}

#[test]
fn other_groups_routes_are_ensured_without_reading_them_back() {
    let dir = TempDir::new();
    let store = open(&dir, "net");
    let mut kernel = FakeKernel::new();
    let leak = route("10.244.0.0/16", 10, "169.254.10.1");
    kernel.objects.insert(leak.clone());
    let group = NodeGroup::new(GroupKey::VrfLeak("vrf-oam".into()), vec![leak]);
    add(&store, &mut kernel, "a", &group);
    assert_eq!(
        kernel.calls,
        [
            "observe_all of 0 object(s)",
            "ensure inet route 10.244.0.0/16 table 10 via 169.254.10.1",
        ]
    );
}

#[test]
fn teardown_goes_on_after_failed_removals_and_reports_them_all() {
    let dir = TempDir::new();
    let store = open(&dir, "net");
    let mut kernel = FakeKernel::new();
    add(&store, &mut kernel, "a", &oam());
    let pod = vec![
        pod_mtu("net1", 1450, Some(1500)),
        pod_mtu("eth0", 1400, None),
    ];
    kernel.fail("remove pod link eth0 mtu 1400");
    kernel.fail("remove inet route 10.40.0.0/16 table 100 via 10.30.0.254");
    kernel.calls.clear();
    let err = teardown(&store, &mut kernel, &record("a", pod, vec![oam().key])).unwrap_err();
    assert_eq!(err.code, code::KERNEL);
    assert_eq!(
        err.msg,
        "remove pod link eth0 mtu 1400: injected failure; \
         remove inet route 10.40.0.0/16 table 100 via 10.30.0.254: injected failure"
    );
    // Everything else was still done: the other pod object, the hold, the
    // group's other objects.
    assert_eq!(
        kernel.calls,
        [
            "remove pod link eth0 mtu 1400",
            "remove pod link net1 mtu 1450 (was 1500)",
            "remove inet route 10.40.0.0/16 table 100 via 10.30.0.254",
            "remove inet route default table 100 via 10.30.0.1",
            "remove inet rule 1000: from 10.244.0.5 lookup 100",
        ]
    );
    assert_eq!(
        kernel.present(),
        ["inet route 10.40.0.0/16 table 100 via 10.30.0.254"]
    );
    assert!(store.holders(&oam().key).unwrap().is_empty());
    // The group stays on record, so that a retry (GC) finds what is left.
    assert_eq!(store.group(&oam().key).unwrap(), Some(oam()));
}

#[test]
fn a_pod_object_gone_with_its_netns_is_not_a_failure_but_a_node_object_is() {
    let dir = TempDir::new();
    let store = open(&dir, "net");
    let mut kernel = FakeKernel::new();
    kernel.fail_with("remove pod link net1 mtu 1450", code::UNKNOWN_CONTAINER);
    let pod = record("a", vec![pod_mtu("net1", 1450, None)], vec![]);
    teardown(&store, &mut kernel, &pod).unwrap();

    let node_rule = rule(1000, "10.244.0.5/32", 100);
    kernel.fail_with(format!("remove {node_rule}"), code::UNKNOWN_CONTAINER);
    let node = record("b", vec![node_rule], vec![]);
    let err = teardown(&store, &mut kernel, &node).unwrap_err();
    assert_eq!(err.code, code::UNKNOWN_CONTAINER);
}

#[test]
fn a_node_sysctl_is_read_first_and_restored_by_its_last_holder_across_networks() {
    let dir = TempDir::new();
    let mut kernel = FakeKernel::new();
    kernel.sysctls.insert(SRC_VALID_MARK.into(), "0".into());
    let mark = policy(
        "mark",
        vec![
            Object::sysctl(SRC_VALID_MARK, "1"),
            rule(1000, "10.244.0.5/32", 100),
        ],
    );
    let blue = open(&dir, "blue");
    let red = open(&dir, "red");
    add(&blue, &mut kernel, "a", &mark);
    add(&red, &mut kernel, "b", &mark);
    let write = format!("ensure sysctl {SRC_VALID_MARK} = 1");
    let read = format!("read_sysctl {SRC_VALID_MARK}");
    assert_eq!(kernel.calls_to("read_sysctl"), [read.as_str()]);
    assert!(kernel.position(&read).unwrap() < kernel.position(&write).unwrap());
    assert_eq!(kernel.sysctls[SRC_VALID_MARK], "1");
    // Held once in the node scope by each network's group, which keeps
    // the value found before.
    let node = blue.open_node_scope().unwrap();
    let key = GroupKey::Sysctl(SRC_VALID_MARK.into());
    assert_eq!(
        node.holders(&key).unwrap(),
        ["blue@steering.mark", "red@steering.mark"]
    );
    let shared = node.group(&key).unwrap().unwrap();
    assert_eq!(
        shared.restore.sysctls,
        BTreeMap::from([(SRC_VALID_MARK.to_string(), "0".to_string())])
    );
    drop(node);

    // The first network to go leaves the value to the other one.
    teardown(
        &blue,
        &mut kernel,
        &record("a", vec![], vec![mark.key.clone()]),
    )
    .unwrap();
    assert_eq!(kernel.sysctls[SRC_VALID_MARK], "1");
    assert!(!kernel.calls.iter().any(|c| c.ends_with(" = 0")));
    // The last one puts back what was there before.
    teardown(
        &red,
        &mut kernel,
        &record("b", vec![], vec![mark.key.clone()]),
    )
    .unwrap();
    assert_eq!(kernel.sysctls[SRC_VALID_MARK], "0");
    assert_eq!(
        kernel.calls.last().unwrap(),
        &format!("ensure sysctl {SRC_VALID_MARK} = 0")
    );
    let node = red.open_node_scope().unwrap();
    assert_eq!(node.group(&key).unwrap(), None);
}

#[test]
fn a_node_sysctl_dropped_from_a_changed_plan_is_released_and_restored() {
    let dir = TempDir::new();
    let store = open(&dir, "net");
    let mut kernel = FakeKernel::new();
    kernel.sysctls.insert(SRC_VALID_MARK.into(), "0".into());
    let with = policy(
        "mark",
        vec![
            Object::sysctl(SRC_VALID_MARK, "1"),
            rule(1000, "10.244.0.5/32", 100),
        ],
    );
    add(&store, &mut kernel, "a", &with);
    assert_eq!(kernel.sysctls[SRC_VALID_MARK], "1");
    let without = policy("mark", vec![rule(1000, "10.244.0.5/32", 100)]);
    add(&store, &mut kernel, "a", &without);
    assert_eq!(kernel.sysctls[SRC_VALID_MARK], "0");
    let node = store.open_node_scope().unwrap();
    let key = GroupKey::Sysctl(SRC_VALID_MARK.into());
    assert!(node.holders(&key).unwrap().is_empty());
    assert_eq!(node.group(&key).unwrap(), None);
}

#[test]
fn a_node_sysctl_found_at_its_value_is_left_as_is_by_the_last_holder() {
    let dir = TempDir::new();
    let store = open(&dir, "net");
    let mut kernel = FakeKernel::new();
    kernel
        .sysctls
        .insert("net.ipv4.ip_forward".into(), "1".into());
    let group = policy("p", vec![Object::sysctl("net.ipv4.ip_forward", "1")]);
    add(&store, &mut kernel, "a", &group);
    kernel.calls.clear();
    teardown(&store, &mut kernel, &record("a", vec![], vec![group.key])).unwrap();
    assert!(kernel.calls.is_empty(), "{:?}", kernel.calls);
    assert_eq!(kernel.sysctls["net.ipv4.ip_forward"], "1");
}

#[test]
fn a_group_that_kept_its_own_restore_value_restores_it_itself() {
    let dir = TempDir::new();
    let store = open(&dir, "net");
    let mut kernel = FakeKernel::new();
    // Written before sysctls were shared through the node scope: the
    // network's group read "0" and set "1".
    let mut old = policy("mark", vec![Object::sysctl(SRC_VALID_MARK, "1")]);
    old.restore
        .sysctls
        .insert(SRC_VALID_MARK.into(), "0".into());
    store.put_group(&old).unwrap();
    kernel.sysctls.insert(SRC_VALID_MARK.into(), "1".into());
    add(
        &store,
        &mut kernel,
        "a",
        &policy("mark", old.objects.clone()),
    );
    assert_eq!(store.group(&old.key).unwrap(), Some(old.clone()));
    teardown(
        &store,
        &mut kernel,
        &record("a", vec![], vec![old.key.clone()]),
    )
    .unwrap();
    assert_eq!(kernel.sysctls[SRC_VALID_MARK], "0");
}

fn saved_eth1() -> SavedUplink {
    SavedUplink {
        addresses: vec!["10.30.0.1/24".parse().unwrap()],
        routes: vec![SavedRoute {
            route: RouteSpec {
                dev: Some("eth1".into()),
                ..route_spec("10.40.0.0/16", 254, "10.30.0.254")
            },
            protocol: 4,
            scope: 0,
            prefsrc: None,
            onlink: false,
        }],
    }
}

#[test]
fn an_uplink_is_captured_once_and_gets_back_what_it_had() {
    let dir = TempDir::new();
    let store = open(&dir, "net");
    let mut kernel = FakeKernel::new();
    kernel.uplinks.insert("eth1".into(), saved_eth1());
    let vrf_link = link("vrf-oam", LinkKind::Vrf { table: 10 }, 65575, None);
    let uplink = Object::Uplink {
        dev: "eth1".into(),
        vrf: "vrf-oam".into(),
        table: 10,
    };
    let key = GroupKey::VrfInfra("vrf-oam".into());
    add(
        &store,
        &mut kernel,
        "a",
        &NodeGroup::new(key.clone(), vec![vrf_link.clone(), uplink.clone()]),
    );
    // A changed group (a leg's address added) does not capture the
    // enslaved uplink again: it would find nothing left to save.
    let leg = Object::Address {
        dev: "vrf-oam-leg".into(),
        addr: "169.254.10.2/30".parse().unwrap(),
    };
    let changed = NodeGroup::new(key.clone(), vec![vrf_link, uplink, leg]);
    add(&store, &mut kernel, "a", &changed);
    let saved = "saved [10.30.0.1/24, inet route 10.40.0.0/16 table 254 via 10.30.0.254 \
                 dev eth1 proto 4]";
    let enslave =
        format!("ensure_uplink uplink eth1 master vrf-oam (routes to table 10) with {saved}");
    assert_eq!(kernel.calls_to("capture_uplink"), ["capture_uplink eth1"]);
    assert_eq!(kernel.calls_to("ensure_uplink"), [enslave.clone(), enslave]);
    let stored = store.group(&key).unwrap().unwrap();
    assert_eq!(stored.restore.uplinks.get("eth1"), Some(&saved_eth1()));
    assert_eq!(stored.objects, changed.objects);

    kernel.calls.clear();
    remove_group(&store, &mut kernel, &key).unwrap();
    assert_eq!(
        kernel.calls_to("release_uplink"),
        [format!(
            "release_uplink uplink eth1 master vrf-oam (routes to table 10) with {saved}"
        )]
    );
    assert_eq!(kernel.uplinks["eth1"], saved_eth1());
    assert!(kernel.present().is_empty(), "{:?}", kernel.present());
}

#[test]
fn capture_takes_an_earlier_records_values_and_reads_the_rest() {
    let mut kernel = FakeKernel::new();
    // gwsteer's own MTU is on net1 now; eth0 has its own.
    kernel.mtus.insert("net1".into(), 1450);
    kernel.mtus.insert("eth0".into(), 1500);
    let planned = vec![pod_mtu("net1", 1450, None), pod_mtu("eth0", 1400, None)];
    let old = record("a", vec![pod_mtu("net1", 1450, Some(1500))], vec![]);
    let done = capture(&mut kernel, &planned, Some(&old)).unwrap();
    assert_eq!(
        lines(&done),
        [
            "pod link net1 mtu 1450 (was 1500)",
            "pod link eth0 mtu 1400 (was 1500)",
        ]
    );
    assert_eq!(kernel.calls, ["capture pod link eth0 mtu 1400"]);
}

#[test]
fn owned_tables_are_the_node_route_tables_but_not_a_vrfs() {
    let groups = [
        oam(),
        policy("other", vec![route("0.0.0.0/0", 101, "10.31.0.1")]),
        NodeGroup::new(
            GroupKey::VrfInfra("vrf-oam".into()),
            vec![link("vrf-oam", LinkKind::Vrf { table: 10 }, 65575, None)],
        ),
        NodeGroup::new(
            GroupKey::VrfLeak("vrf-oam".into()),
            vec![route("10.244.0.0/16", 10, "169.254.10.1")],
        ),
        NodeGroup::new(
            GroupKey::GatewayInfra,
            vec![Object::Route {
                spec: route_spec("0.0.0.0/0", 200, "10.32.0.1"),
                side: Side::Pod,
            }],
        ),
    ];
    assert_eq!(owned_tables(&groups), BTreeSet::from([100, 101]));
}

#[test]
fn foreign_in_tables_reports_foreign_rules_and_routes_in_unrecorded_slots() {
    let mut kernel = FakeKernel::new();
    for obj in oam().objects {
        crate::kernel::Kernel::ensure(&mut kernel, &obj).unwrap();
    }
    // Lost state: a route of gwsteer's that no record has.
    crate::kernel::Kernel::ensure(&mut kernel, &route("10.60.0.0/16", 100, "10.30.0.254")).unwrap();
    kernel
        .foreign_rules
        .push((rule_spec(500, "10.244.0.9/32", 100), 4));
    kernel
        .foreign_routes
        .push((route_spec("10.50.0.0/16", 100, "10.30.0.7"), 4));
    kernel
        .foreign_routes
        .push((route_spec("10.70.0.0/16", 300, "10.30.0.7"), 4));
    let found = foreign_in_tables(&mut kernel, &BTreeSet::from([100]), &oam().objects).unwrap();
    let mut text: Vec<String> = found.iter().map(ToString::to_string).collect();
    text.sort();
    assert_eq!(
        text,
        [
            "foreign inet rule 500: from 10.244.0.9 lookup 100 proto static (points at owned table 100)",
            "imposter inet route 10.50.0.0/16 table 100 via 10.30.0.7 proto static (in owned table 100)",
            "orphan inet route 10.60.0.0/16 table 100 via 10.30.0.254 proto gwsteer (no node group has it)",
        ]
    );
}

#[test]
fn combine_keeps_the_first_code_and_every_message() {
    assert_eq!(combine(vec![]), None);
    let one = Error::kernel("remove inet rule 1000: from all lookup 100: EPERM");
    assert_eq!(combine(vec![one.clone()]), Some(one.clone()));
    let all = combine(vec![
        one,
        Error::new(code::IO, "removing holds/steering.oam: EIO"),
        Error::new(code::STATE, "nodes/steering.oam.json: unreadable"),
    ])
    .unwrap();
    assert_eq!(all.code, code::KERNEL);
    assert_eq!(
        all.msg,
        "remove inet rule 1000: from all lookup 100: EPERM; \
         removing holds/steering.oam: EIO; nodes/steering.oam.json: unreadable"
    );
}
