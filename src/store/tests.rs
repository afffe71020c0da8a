use std::fs;
use std::time::Instant;

use super::*;
use std::os::unix::fs::PermissionsExt;

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gwsteer-store-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

fn id(c: &str) -> AttachmentId {
    AttachmentId {
        container_id: c.into(),
        ifname: "eth0".into(),
    }
}

fn record(c: &str) -> Record {
    Record {
        schema: SCHEMA,
        network: "net".into(),
        id: id(c),
        netns: None,
        pod_namespace: Some("default".into()),
        pod_name: None,
        objects: vec![],
        holds: vec![GroupKey::Policy("oam".into())],
        created: 1,
        notes: Vec::new(),
    }
}

#[test]
fn records_round_trip_with_private_modes() {
    let root = tmp("rt");
    let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    s.put(&record("c1")).unwrap();
    assert_eq!(s.get(&id("c1")).unwrap(), Some(record("c1")));
    assert_eq!(s.get(&id("c2")).unwrap(), None);
    let dir_mode = fs::metadata(root.join("net/attachments"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let file_mode = fs::metadata(root.join("net/attachments/c1@eth0.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(file_mode & 0o777, 0o600);
    s.delete(&id("c1")).unwrap();
    s.delete(&id("c1")).unwrap();
    assert_eq!(s.list().unwrap().0.len(), 0);
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn corrupt_records_are_set_aside_not_fatal() {
    let root = tmp("corrupt");
    let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    s.put(&record("good")).unwrap();
    fs::write(
        root.join("net/attachments/bad@eth0.json"),
        b"{\"schema\":1,",
    )
    .unwrap();
    fs::write(
        root.join("net/attachments/old@eth0.json"),
        b"{\"schema\":99}",
    )
    .unwrap();
    let e = s.get(&id("bad")).unwrap_err();
    assert_eq!(e.code, code::STATE);
    assert!(e.msg.contains("set aside"), "{}", e.msg);
    let (records, corrupt) = s.list().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(corrupt.len(), 1);
    assert!(corrupt[0].reason.contains("schema 99"));
    assert_eq!(fs::read_dir(root.join("net/corrupt")).unwrap().count(), 2);
    fs::remove_dir_all(root).unwrap();
}

/// An attachment record and a node group as the gwsteer that still had
/// the iptables firewall backend wrote them (a connmark ADD with
/// `firewallBackend: "iptables"`).
const IPTABLES_RECORD: &str = r#"{
  "schema": 1,
  "network": "net",
  "containerId": "ctr1",
  "ifname": "eth0",
  "netns": "/run/netns/pod1",
  "podNamespace": "default",
  "podName": "pod1",
  "objects": [
    {
      "object": "firewall",
      "backend": "iptables",
      "firewall": {
        "fw": "member",
        "network": "net",
        "policy": "ret",
        "addr": "10.244.1.5/32"
      }
    }
  ],
  "holds": [
    "steering.ret",
    "sysctl.net.ipv4.conf.all.src_valid_mark",
    "exemption.10.244.0.0_16"
  ],
  "created": 1796311112
}"#;
const IPTABLES_GROUP: &str = r#"{
  "schema": 1,
  "key": "steering.ret",
  "objects": [
    {
      "object": "route",
      "dst": "0.0.0.0/0",
      "table": 100,
      "kind": "unicast",
      "nexthops": [
        {
          "via": "192.168.2.1",
          "dev": "eth-b",
          "weight": 1
        }
      ]
    },
    {
      "object": "firewall",
      "backend": "iptables",
      "firewall": {
        "fw": "policy",
        "network": "net",
        "policy": "ret",
        "mark": 20,
        "mask": 4294967295,
        "marking": {
          "mode": "connmark",
          "ingress": [
            "eth-b"
          ]
        }
      }
    },
    {
      "object": "rule",
      "family": "inet",
      "priority": 1000,
      "fwmark": 20,
      "table": 100
    }
  ]
}"#;

/// The iptables backend is gone: its records are set aside as corrupt
/// (code 102, no panic) with a reason saying so, not read as nftables
/// objects (whose removal would succeed and forget the iptables rules).
#[test]
fn records_of_the_retired_iptables_backend_are_set_aside() {
    // They are in the format this gwsteer reads and writes: with backend
    // nftables they parse and write back to the same JSON.
    for text in [IPTABLES_RECORD, IPTABLES_GROUP] {
        let nft = text.replace("\"iptables\"", "\"nftables\"");
        let written = if text == IPTABLES_RECORD {
            serde_json::to_string_pretty(&parse_versioned::<Record>(nft.as_bytes()).unwrap())
        } else {
            serde_json::to_string_pretty(&parse_versioned::<NodeGroup>(nft.as_bytes()).unwrap())
        };
        assert_eq!(written.unwrap(), nft);
    }

    let root = tmp("iptables");
    let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    let record = root.join("net/attachments/ctr1@eth0.json");
    let group = root.join("net/nodes/steering.ret.json");
    fs::write(&record, IPTABLES_RECORD).unwrap();
    fs::write(&group, IPTABLES_GROUP).unwrap();
    for e in [
        s.get(&id("ctr1")).unwrap_err(),
        s.group(&GroupKey::Policy("ret".into())).unwrap_err(),
    ] {
        assert_eq!(e.code, code::STATE, "{}", e.msg);
        assert!(
            e.msg.contains(crate::model::RETIRED_IPTABLES) && e.msg.contains("set aside"),
            "{}",
            e.msg
        );
    }
    assert!(!record.exists() && !group.exists());
    assert_eq!(fs::read_dir(root.join("net/corrupt")).unwrap().count(), 2);
    assert_eq!(s.get(&id("ctr1")).unwrap(), None);
    assert_eq!(s.group(&GroupKey::Policy("ret".into())).unwrap(), None);

    fs::write(&record, IPTABLES_RECORD).unwrap();
    let (records, corrupt) = s.list().unwrap();
    assert!(records.is_empty());
    assert_eq!(corrupt.len(), 1);
    assert!(
        corrupt[0].reason.contains(crate::model::RETIRED_IPTABLES),
        "{}",
        corrupt[0].reason
    );
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn holds_count_by_files() {
    let root = tmp("holds");
    let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    let g = GroupKey::Policy("g".into());
    s.hold(&g, &id("a")).unwrap();
    s.hold(&g, &id("b")).unwrap();
    s.hold(&g, &id("b")).unwrap();
    assert!(!s.release(&g, &id("a")).unwrap());
    assert!(s.release(&g, &id("b")).unwrap());
    assert!(s.release(&g, &id("b")).unwrap());
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn lock_times_out_with_try_again_later() {
    let root = tmp("lock");
    let held = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    let t = Instant::now();
    let e = match Store::open(&root, "net", Duration::from_millis(100)) {
        Err(e) => e,
        Ok(_) => panic!("second lock must not be granted"),
    };
    assert_eq!(e.code, code::TRY_AGAIN_LATER);
    assert!(t.elapsed() >= Duration::from_millis(100));
    drop(held);
    Store::open(&root, "net", Duration::from_millis(100)).unwrap();
    fs::remove_dir_all(root).unwrap();
}

/// A DEL, CHECK or GC does not take the lock while an ADD waits for it,
/// even when the lock is free at that moment: it gives up with 11 after
/// its wait. Another ADD is not held back.
#[test]
fn others_do_not_take_the_lock_while_an_add_waits() {
    let root = tmp("addwaits");
    drop(Store::open(&root, "net", Duration::from_secs(1)).unwrap());
    let adds = open_lock(&root.join("net/lock.add"), true).unwrap();
    adds.lock_shared().unwrap(); // as an ADD waiting for the lock does
    let t = Instant::now();
    let e = match Store::open(&root, "net", Duration::from_millis(100)) {
        Err(e) => e,
        Ok(_) => panic!("the lock went to a DEL while an ADD waited"),
    };
    assert_eq!(e.code, code::TRY_AGAIN_LATER);
    assert!(e.msg.contains("pod starts (ADD)"), "{}", e.msg);
    assert!(t.elapsed() >= Duration::from_millis(100));
    drop(Store::open_for_add(&root, "net", Duration::from_millis(100)).unwrap());
    adds.unlock().unwrap();
    drop(Store::open(&root, "net", Duration::from_millis(100)).unwrap());
    fs::remove_dir_all(root).unwrap();
}

/// An ADD that has waited a while (backing off to 10 ms between tries)
/// gets the lock before a DEL that arrives just as it is freed and
/// tries every 200 µs: without the ADD's turn, the DEL would win.
#[test]
fn a_waiting_add_gets_the_lock_before_a_del_that_polls_faster() {
    use std::sync::{Arc, Mutex};
    let root = tmp("addfirst");
    let held = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let caller = |add: bool| {
        let (root, order) = (root.clone(), order.clone());
        std::thread::spawn(move || {
            let wait = Duration::from_secs(5);
            let s = if add {
                Store::open_for_add(&root, "net", wait)
            } else {
                Store::open(&root, "net", wait)
            }
            .unwrap();
            order.lock().unwrap().push(if add { "ADD" } else { "DEL" });
            std::thread::sleep(Duration::from_millis(20));
            drop(s);
        })
    };
    let add = caller(true);
    std::thread::sleep(Duration::from_millis(60));
    let del = caller(false);
    std::thread::sleep(Duration::from_millis(2));
    drop(held);
    add.join().unwrap();
    del.join().unwrap();
    assert_eq!(*order.lock().unwrap(), ["ADD", "DEL"]);
    fs::remove_dir_all(root).unwrap();
}

/// What a second first call sees while the first is still making the
/// store: `<network>/` made, no lock file, no subdirectories yet.
#[test]
fn a_store_directory_without_lock_gets_its_subdirectories() {
    let root = tmp("firstrace");
    fs::create_dir_all(root.join("net")).unwrap();
    let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    s.put(&record("c1")).unwrap();
    s.hold(&GroupKey::Policy("g".into()), &id("c1")).unwrap();
    assert_eq!(s.get(&id("c1")).unwrap(), Some(record("c1")));
    fs::remove_dir_all(root).unwrap();
}

/// A store written by the previous release (schema 1) is read as it is:
/// nothing is set aside, and a group written back is schema 2.
#[test]
fn a_schema_1_store_is_read_not_set_aside() {
    let root = tmp("schema1");
    let s = Store::open(&root, "oldnet", Duration::from_secs(1)).unwrap();
    let fixture = |name: &str| {
        fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/schema1")
                .join(name),
        )
        .unwrap()
    };
    fs::write(
        s.dir().join("attachments/c1@eth0.json"),
        fixture("record.json"),
    )
    .unwrap();
    fs::write(
        s.dir().join("nodes/steering.egress.json"),
        fixture("policy-group.json"),
    )
    .unwrap();
    let (records, corrupt) = s.list().unwrap();
    assert!(corrupt.is_empty(), "{corrupt:?}");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].schema, 1);
    let key = GroupKey::Policy("egress".into());
    assert_eq!(s.group_keys().unwrap(), vec![key.clone()]);
    let g = s.group(&key).unwrap().expect("the schema 1 group");
    assert_eq!(g.schema, 1);
    s.put_group(&NodeGroup {
        schema: SCHEMA,
        ..g
    })
    .unwrap();
    let text = fs::read_to_string(s.dir().join("nodes/steering.egress.json")).unwrap();
    assert!(
        text.contains("\"schema\": 2") || text.contains("\"schema\":2"),
        "{text}"
    );
    fs::remove_dir_all(root).unwrap();
}

/// The lock file at `path`, as another process opens it.
fn open_lock(path: &Path, create: bool) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
}

// ---------------------------------------------------------------------------
// Hostile input: the store is root's, the lock means what it says, records
// name themselves, and a DEL finds "nothing recorded" whatever the store.

/// A scratch path for one test, removed when the guard drops (also when
/// the test fails).
fn scratch(tag: &str) -> (PathBuf, Cleanup) {
    let path = tmp(tag);
    (path.clone(), Cleanup(path))
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if fs::remove_dir_all(&self.0).is_err() {
            let _ = fs::remove_file(&self.0);
        }
    }
}

/// A file outside the store and its bytes, to check it is never touched.
struct Outside {
    dir: PathBuf,
}

impl Outside {
    fn new(root: &Path) -> Outside {
        let dir = root.with_extension("outside");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for name in ["a", "b", "target"] {
            fs::write(dir.join(name), format!("precious {name}\n")).unwrap();
        }
        Outside { dir }
    }

    fn assert_untouched(&self) {
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b", "target"], "files outside the store");
        for name in ["a", "b", "target"] {
            assert_eq!(
                fs::read_to_string(self.dir.join(name)).unwrap(),
                format!("precious {name}\n")
            );
        }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn corrupt_names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root.join("net/corrupt"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Symlinks planted at the lock, `lock.add`, the temporary file's old
/// (predictable) name, a record and `holds/<group>` are never followed:
/// nothing outside the store is written, created, read as a record or
/// deleted (before: the lock and `lock.add` created files outside, the
/// write truncated the target, the record was read, and GC's orphan
/// cleanup deleted every file of the other directory).
#[test]
fn symlinks_planted_in_the_store_are_never_followed() {
    use std::os::unix::fs::symlink;
    let (root, _cleanup) = scratch("symlinks");
    let out = Outside::new(&root);
    let net = root.join("net");
    // The lock (dangling: the old code created its target).
    for sub in ["attachments", "nodes", "holds"] {
        fs::create_dir_all(net.join(sub)).unwrap();
    }
    symlink(out.dir.join("made-by-lock"), net.join("lock")).unwrap();
    let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    assert!(fs::symlink_metadata(net.join("lock")).unwrap().is_file());
    assert!(corrupt_names(&root)[0].starts_with("lock."));
    out.assert_untouched();

    // `lock.add`, made by an ADD that has to wait.
    symlink(out.dir.join("made-by-add"), net.join("lock.add")).unwrap();
    assert!(Store::open_for_add(&root, "net", Duration::from_millis(50)).is_err());
    out.assert_untouched();

    // The temporary file of an atomic write, at the name it used to have.
    let tmp_name = format!("c1@eth0.tmp.{}", std::process::id());
    symlink(
        out.dir.join("target"),
        net.join("attachments").join(&tmp_name),
    )
    .unwrap();
    s.put(&record("c1")).unwrap();
    assert_eq!(s.get(&id("c1")).unwrap(), Some(record("c1")));
    out.assert_untouched();

    // A record that is a symlink to a record-shaped file elsewhere.
    let forged = out.dir.with_extension("forged.json");
    fs::write(&forged, serde_json::to_vec(&record("c2")).unwrap()).unwrap();
    symlink(&forged, net.join("attachments/c2@eth0.json")).unwrap();
    let e = s.get(&id("c2")).unwrap_err();
    assert_eq!(e.code, code::STATE, "{}", e.msg);
    assert!(e.msg.contains("symbolic link"), "{}", e.msg);
    assert!(forged.exists());
    fs::remove_file(&forged).unwrap();

    // `holds/<group>` pointing at another directory: GC's orphan cleanup
    // (holders without a record are dropped) must stay in the store.
    let g = GroupKey::Policy("oam".into());
    s.hold(&g, &id("c1")).unwrap();
    fs::remove_dir_all(net.join("holds/steering.oam")).unwrap();
    symlink(&out.dir, net.join("holds/steering.oam")).unwrap();
    for holder in s.holders(&g).unwrap() {
        if !s.has_record_stem(&holder) {
            s.drop_holder(&g, &holder).unwrap();
        }
    }
    out.assert_untouched();
    // Set aside, and made again from the record that holds the group.
    assert!(
        fs::symlink_metadata(net.join("holds/steering.oam"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(s.holders(&g).unwrap(), ["c1@eth0"]);
    drop(s);
    fs::remove_dir_all(root).unwrap();
}

/// A fifo, a directory or a file of another owner where a record or group
/// belongs is set aside, never read (a fifo would block the read).
#[test]
fn entries_that_are_not_regular_files_of_ours_are_set_aside() {
    let (root, _cleanup) = scratch("notours");
    let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    let fifo = root.join("net/nodes/steering.f.json");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let e = s.group(&GroupKey::Policy("f".into())).unwrap_err();
    assert!(e.msg.contains("fifo"), "{}", e.msg);
    fs::create_dir(root.join("net/attachments/d@eth0.json")).unwrap();
    let theirs = root.join("net/attachments/n@eth0.json");
    fs::write(&theirs, serde_json::to_vec(&record("n")).unwrap()).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    s.put(&record("good")).unwrap();
    let (records, corrupt) = s.list().unwrap();
    assert_eq!(records, [record("good")]);
    let mut reasons: Vec<&str> = corrupt.iter().map(|c| c.reason.as_str()).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "a directory, not a regular file",
            "owned by uid 65534, not root"
        ]
    );
    // A directory where a record is written is set aside too.
    fs::create_dir(root.join("net/attachments/w@eth0.json")).unwrap();
    s.put(&record("w")).unwrap();
    assert_eq!(s.get(&id("w")).unwrap(), Some(record("w")));
    assert_eq!(corrupt_names(&root).len(), 4);
    fs::remove_dir_all(root).unwrap();
}

/// A record whose content names another attachment (or network) than its
/// file name, or a group another key, is corrupt: set aside, not acted on
/// (before: read as the attachment of the file name).
#[test]
fn a_record_that_names_another_attachment_is_set_aside() {
    let (root, _cleanup) = scratch("names");
    let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    let text = serde_json::to_vec(&record("victim")).unwrap();
    fs::write(root.join("net/attachments/other@eth0.json"), &text).unwrap();
    let e = s.get(&id("other")).unwrap_err();
    assert_eq!(e.code, code::STATE);
    assert!(e.msg.contains("names attachment victim@eth0"), "{}", e.msg);
    let mut elsewhere = record("x");
    elsewhere.network = "othernet".into();
    fs::write(
        root.join("net/attachments/x@eth0.json"),
        serde_json::to_vec(&elsewhere).unwrap(),
    )
    .unwrap();
    fs::write(root.join("net/attachments/y@eth1.json"), &text).unwrap();
    let (records, corrupt) = s.list().unwrap();
    assert!(records.is_empty(), "{records:?}");
    assert_eq!(corrupt.len(), 2);
    let group = NodeGroup::new(GroupKey::Policy("a".into()), vec![]);
    fs::write(
        root.join("net/nodes/steering.b.json"),
        serde_json::to_vec(&group).unwrap(),
    )
    .unwrap();
    let e = s.group(&GroupKey::Policy("b".into())).unwrap_err();
    assert!(e.msg.contains("names group steering.a"), "{}", e.msg);
    fs::remove_dir_all(root).unwrap();
}

/// A `holds/<group>` that is a regular file does not make every release
/// fail (DEL and GC for good): it is set aside and the holders are made
/// again from the records (before: "Not a directory", code 5).
#[test]
fn a_holds_entry_that_is_a_file_is_set_aside_and_remade_from_records() {
    let (root, _cleanup) = scratch("holdsfile");
    let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    let g = GroupKey::Policy("oam".into());
    for c in ["a", "b"] {
        s.put(&record(c)).unwrap();
        s.hold(&g, &id(c)).unwrap();
    }
    let holds = root.join("net/holds/steering.oam");
    fs::remove_dir_all(&holds).unwrap();
    fs::write(&holds, b"junk").unwrap();
    assert!(!s.release(&g, &id("a")).unwrap(), "b still holds it");
    assert_eq!(s.holders(&g).unwrap(), ["b@eth0"]);
    assert!(corrupt_names(&root)[0].starts_with("holds.steering.oam."));
    fs::remove_dir_all(&holds).unwrap();
    fs::write(&holds, b"junk").unwrap();
    s.delete(&id("b")).unwrap();
    s.delete(&id("a")).unwrap();
    assert!(s.unheld(&g).unwrap());
    fs::write(&holds, b"junk").unwrap();
    s.delete_group(&g).unwrap();
    assert!(!holds.exists());
    fs::remove_dir_all(root).unwrap();
}

/// The locked file must still be the one at the lock path: a holder whose
/// lock file is removed, or replaced, mid-section still keeps every other
/// caller out until it is done (before: the next caller took a fresh file
/// and ran alongside).
#[test]
fn a_lock_file_removed_or_replaced_while_held_keeps_others_out() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    for replace in [false, true] {
        let (root, _cleanup) = scratch(if replace { "lockrepl" } else { "lockrm" });
        let inside = Arc::new(AtomicUsize::new(0));
        let overlaps = Arc::new(AtomicUsize::new(0));
        let section = |s: Store, inside: &AtomicUsize, overlaps: &AtomicUsize| {
            if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                overlaps.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(150));
            inside.fetch_sub(1, Ordering::SeqCst);
            drop(s);
        };
        let holder = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
        inside.fetch_add(1, Ordering::SeqCst);
        // One caller already waits on the old file.
        let caller = |add: bool| {
            let (root, inside, overlaps) = (root.clone(), inside.clone(), overlaps.clone());
            std::thread::spawn(move || {
                let wait = Duration::from_secs(5);
                let s = if add {
                    Store::open_for_add(&root, "net", wait)
                } else {
                    Store::open(&root, "net", wait)
                };
                section(s.unwrap(), &inside, &overlaps);
            })
        };
        let early = caller(false);
        std::thread::sleep(Duration::from_millis(30));
        let lock = root.join("net/lock");
        if replace {
            fs::write(root.join("net/lock.new"), b"").unwrap();
            fs::rename(root.join("net/lock.new"), &lock).unwrap();
        } else {
            fs::remove_file(&lock).unwrap();
        }
        // Two more arrive after the change.
        let late = [caller(true), caller(false)];
        std::thread::sleep(Duration::from_millis(200));
        inside.fetch_sub(1, Ordering::SeqCst);
        drop(holder);
        early.join().unwrap();
        for t in late {
            t.join().unwrap();
        }
        assert_eq!(
            overlaps.load(Ordering::SeqCst),
            0,
            "critical sections overlapped (lock file {})",
            if replace { "replaced" } else { "removed" }
        );
        fs::remove_dir_all(root).unwrap();
    }
}

/// A state directory anyone but root can change is refused, naming it:
/// under a world-writable directory without the sticky bit, owned by
/// another user, or writable by others (code 7, the config's stateDir); a
/// network directory of another owner (code 5). /tmp, sticky, is a fine
/// ancestor (every test here lives under it).
#[test]
fn a_state_dir_others_can_write_is_refused() {
    use std::os::unix::fs::chown;
    let (base, _cleanup) = scratch("unsafe");
    fs::create_dir_all(&base).unwrap();
    let open = |state: &Path| match Store::open(state, "net", Duration::from_millis(100)) {
        Ok(_) => panic!("{} was accepted", state.display()),
        Err(e) => e,
    };
    let open_wide = base.join("wide");
    fs::create_dir(&open_wide).unwrap();
    fs::set_permissions(&open_wide, fs::Permissions::from_mode(0o777)).unwrap();
    let e = open(&open_wide.join("state"));
    assert_eq!(e.code, code::INVALID_CONFIG, "{}", e.msg);
    assert!(
        e.msg.contains(&format!("{}:", open_wide.display())),
        "{}",
        e.msg
    );
    assert!(e.msg.contains("without the sticky bit"), "{}", e.msg);
    assert!(!open_wide.join("state").exists());

    let nobodys = base.join("nobodys");
    fs::create_dir(&nobodys).unwrap();
    chown(&nobodys, Some(65534), Some(65534)).unwrap();
    let e = open(&nobodys);
    assert_eq!(e.code, code::INVALID_CONFIG, "{}", e.msg);
    assert!(e.msg.contains("owned by uid 65534"), "{}", e.msg);
    let e = open(&nobodys.join("state"));
    assert!(e.msg.contains(&nobodys.display().to_string()), "{}", e.msg);

    let writable = base.join("writable");
    fs::create_dir(&writable).unwrap();
    fs::set_permissions(&writable, fs::Permissions::from_mode(0o1777)).unwrap();
    let e = open(&writable);
    assert!(e.msg.contains("writable by group or others"), "{}", e.msg);
    // Sticky is fine above the state directory, not for it.
    Store::open(&writable.join("state"), "net", Duration::from_millis(100)).unwrap();

    let state = base.join("state");
    fs::create_dir_all(state.join("net")).unwrap();
    chown(state.join("net"), Some(65534), None).unwrap();
    let e = open(&state);
    assert_eq!(e.code, code::IO, "{}", e.msg);
    assert!(
        e.msg.contains(&state.join("net").display().to_string()),
        "{}",
        e.msg
    );
    fs::remove_dir_all(base).unwrap();
}

/// What DEL opens: nothing is made where nothing was recorded, whatever
/// the state directory is; a store that exists is locked as always.
#[test]
fn open_existing_makes_nothing_and_still_locks() {
    let (root, _cleanup) = scratch("existing");
    let wait = Duration::from_millis(100);
    assert!(Store::open_existing(&root, "net", wait).unwrap().is_none());
    assert!(!root.exists());
    fs::write(&root, b"a file").unwrap();
    assert!(Store::open_existing(&root, "net", wait).unwrap().is_none());
    fs::remove_file(&root).unwrap();
    fs::create_dir(&root).unwrap();
    assert!(Store::open_existing(&root, "net", wait).unwrap().is_none());
    assert!(!root.join("net").exists());
    let long = "n".repeat(300);
    assert!(Store::open_existing(&root, &long, wait).unwrap().is_none());
    let held = Store::open(&root, "net", wait).unwrap();
    let e = match Store::open_existing(&root, "net", wait) {
        Err(e) => e,
        Ok(_) => panic!("the lock of an existing store must be taken"),
    };
    assert_eq!(e.code, code::TRY_AGAIN_LATER);
    // A container id too long for a file name was never recorded.
    assert_eq!(held.get(&id(&"c".repeat(250))).unwrap(), None);
    held.delete(&id(&"c".repeat(250))).unwrap();
    drop(held);
    assert!(Store::open_existing(&root, "net", wait).unwrap().is_some());
    fs::remove_dir_all(root).unwrap();
}

/// A state directory reached through a symlink is checked where it points:
/// a root-owned link to a private directory is fine; to a directory that
/// others can write, refused, naming the directory.
#[test]
fn a_state_dir_behind_a_symlink_is_checked_where_it_points() {
    let (base, _cleanup) = scratch("statelink");
    let real = base.join("real");
    fs::create_dir_all(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&real, base.join("link")).unwrap();
    let s = Store::open(&base.join("link"), "net", Duration::from_millis(100)).unwrap();
    s.put(&record("c1")).unwrap();
    assert!(real.join("net/attachments/c1@eth0.json").exists());
    drop(s);
    // Made below the link, and through a "..".
    fs::create_dir(real.join("sub")).unwrap();
    let below = base.join("link/sub/../deeper");
    drop(Store::open(&below, "net", Duration::from_millis(100)).unwrap());
    assert!(real.join("deeper/net/lock").exists());
    fs::set_permissions(&real, fs::Permissions::from_mode(0o777)).unwrap();
    let e = match Store::open(&base.join("link"), "net", Duration::from_millis(100)) {
        Err(e) => e,
        Ok(_) => panic!("a world-writable state directory behind a symlink was accepted"),
    };
    assert_eq!(e.code, code::INVALID_CONFIG);
    assert!(e.msg.contains(&real.display().to_string()), "{}", e.msg);
    fs::remove_dir_all(base).unwrap();
}

/// Entries set aside under the same name in the same second are all kept
/// for a human: none replaces another in `corrupt/`.
#[test]
fn entries_set_aside_in_the_same_second_are_all_kept() {
    let (root, _cleanup) = scratch("asidemany");
    let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    let at = root.join("net/attachments/c1@eth0.json");
    for i in 0..4 {
        fs::write(&at, format!("not json {i}")).unwrap();
        assert_eq!(s.get(&id("c1")).unwrap_err().code, code::STATE);
    }
    let kept = corrupt_names(&root);
    assert_eq!(kept.len(), 4, "{kept:?}");
    let mut texts: Vec<String> = kept
        .iter()
        .map(|n| fs::read_to_string(root.join("net/corrupt").join(n)).unwrap())
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        ["not json 0", "not json 1", "not json 2", "not json 3"]
    );
}

// ---------------------------------------------------------------------------
// Owner entries (`engine::owner`): one symbolic link per pod address whose
// target is the owning attachment, never followed.

fn owner_key() -> GroupKey {
    GroupKey::Owner(0x1484_f789_d6ef_c873)
}

/// Claiming an address makes one link naming the holder (one system call,
/// where a directory with a holder file took nine); a new owner replaces
/// it; only the holder it names can remove it.
#[test]
fn an_owner_entry_is_one_link_naming_its_holder() {
    let (root, _cleanup) = scratch("ownerlink");
    let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    let key = owner_key();
    let at = root.join("net/holds/owner.1484f789d6efc873");
    assert!(s.holders(&key).unwrap().is_empty());
    s.hold(&key, &id("c1")).unwrap();
    assert!(fs::symlink_metadata(&at).unwrap().is_symlink());
    assert_eq!(fs::read_link(&at).unwrap(), Path::new("c1@eth0"));
    assert_eq!(s.holders(&key).unwrap(), ["c1@eth0"]);
    s.hold(&key, &id("c1")).unwrap();
    assert_eq!(s.holders(&key).unwrap(), ["c1@eth0"]);
    // A new owner takes it over; the old one's drop and release leave it.
    s.hold(&key, &id("c2")).unwrap();
    assert_eq!(s.holders(&key).unwrap(), ["c2@eth0"]);
    s.drop_holder(&key, "c1@eth0").unwrap();
    assert!(!s.release(&key, &id("c1")).unwrap());
    assert_eq!(s.holders(&key).unwrap(), ["c2@eth0"]);
    assert!(!s.unheld(&key).unwrap());
    assert!(s.release(&key, &id("c2")).unwrap());
    assert!(fs::symlink_metadata(&at).is_err());
    assert!(s.unheld(&key).unwrap());
    assert!(corrupt_names(&root).is_empty());
    // No temporary link is left behind by the replacement.
    let left: Vec<_> = fs::read_dir(root.join("net/holds")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The directory with one holder file that an older gwsteer wrote for an
/// owner entry is still read, and becomes a link when an ADD claims the
/// address, or goes when its holder releases it.
#[test]
fn an_owner_directory_of_an_older_gwsteer_is_read_and_replaced() {
    let (root, _cleanup) = scratch("ownerdir");
    let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    let key = owner_key();
    let at = root.join("net/holds/owner.1484f789d6efc873");
    let old_layout = |holder: &str| {
        fs::create_dir(&at).unwrap();
        fs::set_permissions(&at, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(at.join(holder), b"").unwrap();
        fs::set_permissions(at.join(holder), fs::Permissions::from_mode(0o600)).unwrap();
    };
    old_layout("c1@eth0");
    assert_eq!(s.holders(&key).unwrap(), ["c1@eth0"]);
    s.hold(&key, &id("c2")).unwrap();
    assert_eq!(fs::read_link(&at).unwrap(), Path::new("c2@eth0"));
    assert_eq!(s.holders(&key).unwrap(), ["c2@eth0"]);
    assert!(s.release(&key, &id("c2")).unwrap());

    old_layout("c3@eth0");
    assert!(!s.release(&key, &id("c1")).unwrap());
    assert!(at.is_dir());
    assert!(s.release(&key, &id("c3")).unwrap());
    assert!(fs::symlink_metadata(&at).is_err());
    assert!(corrupt_names(&root).is_empty());
}

/// What sits where an owner entry belongs and is not a link naming a
/// holder (a link to a path, a regular file) is set aside, never followed,
/// and the address has no owner; a claim then makes the link.
#[test]
fn an_owner_entry_that_is_not_a_holder_link_is_set_aside() {
    use std::os::unix::fs::symlink;
    let (root, _cleanup) = scratch("ownerbad");
    let out = Outside::new(&root);
    let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    let key = owner_key();
    let at = root.join("net/holds/owner.1484f789d6efc873");
    symlink(out.dir.join("a"), &at).unwrap();
    assert!(s.holders(&key).unwrap().is_empty());
    assert!(fs::symlink_metadata(&at).is_err());
    assert_eq!(corrupt_names(&root).len(), 1);
    out.assert_untouched();

    fs::write(&at, b"c1@eth0").unwrap();
    assert!(s.release(&key, &id("c1")).unwrap());
    assert_eq!(corrupt_names(&root).len(), 2);
    symlink("..", &at).unwrap();
    s.hold(&key, &id("c1")).unwrap();
    assert_eq!(fs::read_link(&at).unwrap(), Path::new("c1@eth0"));
    assert_eq!(corrupt_names(&root).len(), 3);
    out.assert_untouched();
}

/// A table's or priority's claim (node scope) is a link naming the
/// network's group too, and the claim's group goes with it; a claim
/// directory of an older gwsteer is read and gives way to the link.
#[test]
fn a_claim_is_one_link_naming_its_holder() {
    let (root, _cleanup) = scratch("claimlink");
    let s = Store::open(&root, NODE_SCOPE, Duration::from_secs(1)).unwrap();
    let holds = root.join(NODE_SCOPE).join("holds");
    for key in [GroupKey::TableClaim(100), GroupKey::PriorityClaim(999)] {
        let at = holds.join(key.to_string());
        s.put_group(&NodeGroup::new(key.clone(), Vec::new()))
            .unwrap();
        s.hold_by(&key, "net@steering.oam").unwrap();
        assert_eq!(fs::read_link(&at).unwrap(), Path::new("net@steering.oam"));
        assert_eq!(s.holders(&key).unwrap(), ["net@steering.oam"]);
        assert!(!s.release_by(&key, "other@steering.oam").unwrap());
        assert!(s.release_by(&key, "net@steering.oam").unwrap());
        s.delete_group(&key).unwrap();
        assert!(fs::symlink_metadata(&at).is_err());
        assert_eq!(s.group(&key).unwrap(), None);

        fs::create_dir(&at).unwrap();
        fs::set_permissions(&at, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(at.join("net@steering.oam"), b"").unwrap();
        fs::set_permissions(
            at.join("net@steering.oam"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert_eq!(s.holders(&key).unwrap(), ["net@steering.oam"]);
        s.hold_by(&key, "net@steering.oam").unwrap();
        assert!(fs::symlink_metadata(&at).unwrap().is_symlink());
        assert!(s.release_by(&key, "net@steering.oam").unwrap());
    }
    assert!(fs::read_dir(&holds).unwrap().next().is_none());
    let corrupt = root.join(NODE_SCOPE).join("corrupt");
    assert!(!corrupt.exists() || fs::read_dir(corrupt).unwrap().next().is_none());
}

/// A holder's entry (`holds/<group>/<holder>`) that is not an empty
/// regular file of ours (a symlink, a directory, a fifo, another user's
/// file) is set aside and made again, never followed; one that is stays.
#[test]
fn a_holder_entry_that_is_not_a_file_of_ours_is_set_aside_and_made_again() {
    use std::os::unix::fs::symlink;
    let (root, _cleanup) = scratch("holderentry");
    let out = Outside::new(&root);
    let s = Store::open(&root, "net", Duration::from_secs(1)).unwrap();
    let g = GroupKey::Policy("oam".into());
    s.hold(&g, &id("c1")).unwrap();
    let at = root.join("net/holds/steering.oam/c1@eth0");
    let plant: [&dyn Fn(); 4] = [
        &|| symlink(out.dir.join("a"), &at).unwrap(),
        &|| fs::create_dir(&at).unwrap(),
        &|| nix::unistd::mkfifo(&at, nix::sys::stat::Mode::S_IRWXU).unwrap(),
        &|| {
            fs::write(&at, b"").unwrap();
            std::os::unix::fs::chown(&at, Some(65534), Some(65534)).unwrap();
        },
    ];
    for (i, plant) in plant.iter().enumerate() {
        fs::remove_file(&at).unwrap();
        plant();
        s.hold(&g, &id("c1")).unwrap();
        let meta = fs::symlink_metadata(&at).unwrap();
        assert!(meta.is_file(), "{i}: {meta:?}");
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0, "{i}");
        assert_eq!(corrupt_names(&root).len(), i + 1, "{i}");
        out.assert_untouched();
    }
    s.hold(&g, &id("c1")).unwrap();
    assert_eq!(corrupt_names(&root).len(), 4);
    assert_eq!(s.holders(&g).unwrap(), ["c1@eth0"]);
}
