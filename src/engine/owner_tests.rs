//! One object, one owner: two records that list the same per-pod rule (a
//! pod address reused after a lost DEL), against the in-memory kernel.

use std::time::Duration;

use super::fake::{FakeKernel, TempDir};
use super::owner::{self, Owner};
use super::{ensure_group, teardown};
use crate::model::{
    AttachmentId, Family, GroupKey, NextHop, NodeGroup, Object, Record, RouteKind, RouteSpec,
    RuleSpec, SCHEMA,
};
use crate::store::Store;

fn store(dir: &TempDir) -> Store {
    Store::open(dir.path(), "net", Duration::from_secs(5)).unwrap()
}

fn id(container: &str) -> AttachmentId {
    AttachmentId {
        container_id: container.into(),
        ifname: "eth0".into(),
    }
}

fn rule(priority: u32, from: &str, table: u32) -> Object {
    Object::node_rule(RuleSpec {
        family: Family::V4,
        priority,
        src: Some(from.parse().unwrap()),
        dst: None,
        fwmark: None,
        fwmask: None,
        iif: None,
        table,
    })
}

fn oam() -> NodeGroup {
    NodeGroup::new(
        GroupKey::Policy("oam".into()),
        vec![Object::node_route(RouteSpec {
            dst: "0.0.0.0/0".parse().unwrap(),
            table: 100,
            kind: RouteKind::Unicast,
            nexthops: vec![NextHop {
                via: "10.30.0.1".parse().unwrap(),
                dev: None,
                weight: 1,
            }],
            dev: None,
            metric: None,
        })],
    )
}

fn record(container: &str, objects: Vec<Object>) -> Record {
    Record {
        schema: SCHEMA,
        network: "net".into(),
        id: id(container),
        netns: None,
        pod_namespace: None,
        pod_name: None,
        objects,
        holds: vec![oam().key],
        created: 0,
        notes: Vec::new(),
    }
}

/// What ADD does: record, groups, claim the per-pod objects, make them.
fn add(store: &Store, kernel: &mut FakeKernel, record: &Record) {
    store.put(record).unwrap();
    store.hold(&oam().key, &record.id).unwrap();
    ensure_group(store, kernel, &oam()).unwrap();
    owner::claim(store, record).unwrap();
    for obj in &record.objects {
        kernel.ensure(obj).unwrap();
    }
}

/// DEL or GC of a record: teardown, then the record goes.
fn del(store: &Store, kernel: &mut FakeKernel, container: &str) {
    let record = store.get(&id(container)).unwrap().expect("a record");
    teardown(store, kernel, &record).unwrap();
    store.delete(&record.id).unwrap();
}

use crate::kernel::Kernel as _;

const RULE: &str = "inet rule 1000: from 10.244.0.5 lookup 100";

#[test]
fn the_newest_add_owns_a_reused_address_and_the_stale_del_leaves_it() {
    let dir = TempDir::new();
    let store = store(&dir);
    let mut kernel = FakeKernel::new();
    let a = record("a", vec![rule(1000, "10.244.0.5/32", 100)]);
    add(&store, &mut kernel, &a);
    // A's DEL never came; B gets A's address.
    let b = record("b", vec![rule(1000, "10.244.0.5/32", 100)]);
    add(&store, &mut kernel, &b);
    // A lost the rule: its record no longer lists it.
    assert!(store.get(&a.id).unwrap().unwrap().objects.is_empty());
    assert_eq!(
        owner::owner(&store, &a.id, &a.objects[0]).unwrap(),
        Owner::Other("b@eth0".into())
    );
    del(&store, &mut kernel, "a");
    assert!(
        kernel.present().contains(&RULE.to_string()),
        "{:?}",
        kernel.present()
    );
    assert!(
        kernel.calls_to("remove").is_empty(),
        "A's DEL removed something: {:?}",
        kernel.calls
    );
    // B's DEL removes the rule, the table's route with the last holder,
    // and the owner entry.
    del(&store, &mut kernel, "b");
    assert!(kernel.present().is_empty(), "{:?}", kernel.present());
    assert!(
        store
            .holders(&GroupKey::owner_of(&b.objects[0]))
            .unwrap()
            .is_empty()
    );
}

/// A record written before owner entries existed still lists the object:
/// the newer owner's entry keeps it from removing it.
#[test]
fn a_record_without_owner_entries_loses_to_a_newer_add() {
    let dir = TempDir::new();
    let store = store(&dir);
    let mut kernel = FakeKernel::new();
    let a = record("a", vec![rule(1000, "10.244.0.5/32", 100)]);
    store.put(&a).unwrap();
    store.hold(&oam().key, &a.id).unwrap();
    ensure_group(&store, &mut kernel, &oam()).unwrap();
    kernel.ensure(&a.objects[0]).unwrap();
    // Alone, the old record owns what it lists.
    assert_eq!(
        owner::owner(&store, &a.id, &a.objects[0]).unwrap(),
        Owner::Mine { entry: false }
    );
    let b = record("b", vec![rule(1000, "10.244.0.5/32", 100)]);
    add(&store, &mut kernel, &b);
    del(&store, &mut kernel, "a");
    assert!(
        kernel.present().contains(&RULE.to_string()),
        "{:?}",
        kernel.present()
    );
    del(&store, &mut kernel, "b");
    assert!(kernel.present().is_empty(), "{:?}", kernel.present());
}

/// An owner entry whose holder has no record (a crash after its DEL
/// deleted the record) does not keep the object from the record that
/// lists it; the next ADD takes the entry over.
#[test]
fn an_owner_without_a_record_owns_nothing() {
    let dir = TempDir::new();
    let store = store(&dir);
    let mut kernel = FakeKernel::new();
    let obj = rule(1000, "10.244.0.5/32", 100);
    store.hold(&GroupKey::owner_of(&obj), &id("gone")).unwrap();
    let a = record("a", vec![obj.clone()]);
    store.put(&a).unwrap();
    assert_eq!(
        owner::owner(&store, &a.id, &obj).unwrap(),
        Owner::Mine { entry: false }
    );
    add(&store, &mut kernel, &a);
    assert_eq!(
        store.holders(&GroupKey::owner_of(&obj)).unwrap(),
        vec!["a@eth0".to_string()]
    );
    del(&store, &mut kernel, "a");
    assert!(kernel.present().is_empty(), "{:?}", kernel.present());
}

/// A re-ADD of the same attachment keeps its own entry; pod-side objects
/// (the pod's own namespace) get none.
#[test]
fn a_re_add_keeps_its_entry_and_pod_objects_get_none() {
    let dir = TempDir::new();
    let store = store(&dir);
    let mut kernel = FakeKernel::new();
    let pod_side = Object::PodSysctl {
        key: "net.ipv4.ip_forward".into(),
        value: "1".into(),
        previous: None,
    };
    let a = record(
        "a",
        vec![rule(1000, "10.244.0.5/32", 100), pod_side.clone()],
    );
    add(&store, &mut kernel, &a);
    add(&store, &mut kernel, &a);
    assert_eq!(store.get(&a.id).unwrap().unwrap(), a);
    assert!(
        store
            .holders(&GroupKey::owner_of(&pod_side))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.holders(&GroupKey::owner_of(&a.objects[0])).unwrap(),
        vec!["a@eth0".to_string()]
    );
}

/// The owner key is a stable hash of what the object is for, the pod's
/// address (it names files in the store): every rule of one address meets
/// at one entry, another address has its own.
#[test]
fn the_owner_key_is_one_per_address_and_stable() {
    let key = GroupKey::owner_of(&rule(1000, "10.244.0.5/32", 100));
    assert_eq!(key, GroupKey::owner_of(&rule(1000, "10.244.0.5/32", 100)));
    assert_eq!(key, GroupKey::owner_of(&rule(999, "10.244.0.5/32", 254)));
    assert_ne!(key, GroupKey::owner_of(&rule(1000, "10.244.0.6/32", 100)));
    assert_eq!(key.to_string(), "owner.1d212089dbccb16c");
}

/// A reused address where the new pod needs less than the old one made:
/// what only the stale record lists for that address is still its to
/// remove; what the new pod needs too is the new pod's.
#[test]
fn a_stale_record_still_removes_what_only_it_made_for_a_reused_address() {
    let dir = TempDir::new();
    let store = store(&dir);
    let mut kernel = FakeKernel::new();
    let exclusion = Object::node_rule(RuleSpec {
        dst: Some("10.96.0.0/12".parse().unwrap()),
        ..match rule(999, "10.244.0.5/32", 254) {
            Object::Rule { spec, .. } => spec,
            _ => unreachable!(),
        }
    });
    let a = record(
        "a",
        vec![exclusion.clone(), rule(1000, "10.244.0.5/32", 100)],
    );
    add(&store, &mut kernel, &a);
    let b = record("b", vec![rule(1000, "10.244.0.5/32", 100)]);
    add(&store, &mut kernel, &b);
    del(&store, &mut kernel, "a");
    let present = kernel.present();
    assert!(present.contains(&RULE.to_string()), "{present:?}");
    assert!(
        !present.iter().any(|p| p.contains("10.96.0.0/12")),
        "{present:?}"
    );
    assert_eq!(kernel.calls_to("remove").len(), 1, "{:?}", kernel.calls);
    del(&store, &mut kernel, "b");
    assert!(kernel.present().is_empty(), "{:?}", kernel.present());
}
