//! Drift: every kind of object gwsteer owns is deleted or changed by hand,
//! and things are added where only gwsteer may put them. CHECK must fail
//! naming each (code 101), `gwsteer reconcile --once` must put the node back
//! exactly as ADD left it (read back from the kernel) and say what it did,
//! and CHECK must pass again. Things outside gwsteer's tables are left alone
//! by both. Also: orphans from lost state, `--dry-run`, and the loop mode.
//!
//! The policy is multipath (two IPv4 gateways), so it also owns
//! `net.ipv4.fib_multipath_use_neigh`. A `match: "connmark"` policy adds
//! the firewall objects (nftables set element, chains), the fwmark rule
//! and `net.ipv4.conf.all.src_valid_mark`.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::reliability::*;
use crate::support::*;
use serde_json::{Value, json};

const NET: &str = "drift";
const TABLE: u32 = 100;
const POD_V4: &str = "10.244.1.5";
const POD_V6: &str = "fd00:244:0:1::5";

enum Act {
    Ip(&'static [&'static str]),
    Sysctl(&'static str, &'static str),
}

struct Drift {
    what: &'static str,
    acts: &'static [Act],
    /// Text CHECK's message must contain (none: CHECK passes).
    check_names: Option<&'static str>,
    /// Text reconcile's output must contain (none: nothing to do).
    reconcile_says: Option<&'static str>,
}

const DRIFTS: &[Drift] = &[
    Drift {
        what: "steering rule deleted",
        acts: &[Act::Ip(&[
            "rule", "del", "priority", "1000", "from", POD_V4, "table", "100",
        ])],
        check_names: Some("missing inet rule 1000: from 10.244.1.5 lookup 100"),
        reconcile_says: Some("re-created missing inet rule 1000: from 10.244.1.5 lookup 100"),
    },
    Drift {
        what: "exclusion rule deleted",
        acts: &[Act::Ip(&[
            "-6",
            "rule",
            "del",
            "priority",
            "999",
            "from",
            POD_V6,
            "to",
            "fd00:244::/48",
            "table",
            "main",
        ])],
        check_names: Some(
            "missing inet6 rule 999: from fd00:244:0:1::5 to fd00:244::/48 lookup main",
        ),
        reconcile_says: Some(
            "re-created missing inet6 rule 999: from fd00:244:0:1::5 to fd00:244::/48 lookup main",
        ),
    },
    Drift {
        what: "table route gateway changed",
        acts: &[Act::Ip(&[
            "-6", "route", "replace", "default", "via", GW6_B, "dev", "eth1", "table", "100",
        ])],
        check_names: Some(
            "drifted inet6 route default table 100 via fd00:192::fe dev eth1: expected",
        ),
        reconcile_says: Some("repaired drifted inet6 route default table 100 via fd00:192::fe"),
    },
    Drift {
        what: "table route deleted",
        acts: &[Act::Ip(&["route", "del", "default", "table", "100"])],
        check_names: Some("missing inet route default table 100 nexthop via 192.0.2.254"),
        reconcile_says: Some("re-created missing inet route default table 100"),
    },
    Drift {
        what: "sysctl changed",
        acts: &[Act::Sysctl(MULTIPATH_SYSCTL, "0")],
        check_names: Some("drifted sysctl net.ipv4.fib_multipath_use_neigh = 1: is 0"),
        reconcile_says: Some("repaired drifted sysctl net.ipv4.fib_multipath_use_neigh = 1"),
    },
    Drift {
        what: "imposter route in the owned table",
        acts: &[Act::Ip(&[
            "route",
            "add",
            "198.51.100.0/24",
            "via",
            GW4_A,
            "dev",
            "eth1",
            "table",
            "100",
        ])],
        check_names: Some(
            "imposter inet route 198.51.100.0/24 table 100 via 192.0.2.254 dev eth1 proto boot (in owned table 100)",
        ),
        reconcile_says: Some("removed imposter inet route 198.51.100.0/24 table 100"),
    },
    Drift {
        what: "foreign rule pointing at the owned table",
        acts: &[Act::Ip(&[
            "rule", "add", "priority", "500", "from", "10.9.9.9", "table", "100",
        ])],
        check_names: Some(
            "foreign inet rule 500: from 10.9.9.9 lookup 100 proto unspec (points at owned table 100)",
        ),
        reconcile_says: Some("removed foreign inet rule 500: from 10.9.9.9 lookup 100"),
    },
];

struct Fixture {
    node: Node,
    config: Value,
    prev: Value,
    /// Tables read back (owned and foreign).
    tables: Vec<u32>,
    /// The node as ADD left it.
    good: Value,
}

impl Fixture {
    /// The multipath source-steering policy, pod c1 added.
    fn new(tag: &str) -> Fixture {
        let f = Fixture::with(
            tag,
            json!([multipath_policy("peers", TABLE, None, CLUSTER)]),
            vec![TABLE, 300, 400],
        );
        assert_eq!(f.node.sysctl(MULTIPATH_SYSCTL), "1");
        f
    }

    fn with(tag: &str, steering: Value, tables: Vec<u32>) -> Fixture {
        let node = Node::new(tag);
        let config = node.config(NET, steering);
        let prev = prev_result("10.244.1", "fd00:244:0:1", 5, &node.pod_netns);
        let out = node.add("c1", &config, &prev);
        assert!(out.success(), "ADD: {out}");
        let good = node.snapshot(&tables);
        Fixture {
            node,
            config,
            prev,
            tables,
            good,
        }
    }

    fn apply(&self, acts: &[Act]) {
        for act in acts {
            match act {
                Act::Ip(args) => {
                    self.node.lab.ip(&self.node.ns, *args);
                }
                Act::Sysctl(k, v) => self.node.lab.sysctl(&self.node.ns, k, v),
            }
        }
    }

    fn check(&self) -> CniOutcome {
        self.node.check("c1", &self.config, &self.prev)
    }

    fn snapshot(&self) -> Value {
        self.node.snapshot(&self.tables)
    }

    fn reconcile(&self, extra: &[&str]) -> CniOutcome {
        let mut args = vec!["reconcile", "--once"];
        args.extend_from_slice(extra);
        self.node.cli(&args)
    }

    fn assert_good(&self, what: &str) {
        assert_state(what, &self.good, &self.snapshot(), &|| {
            self.node.log_tail(20)
        });
        let out = self.check();
        assert!(out.success(), "{what}: CHECK after reconcile:\n{out}");
    }
}

#[test]
fn each_kind_of_drift_is_named_by_check_and_undone_by_reconcile() {
    let f = Fixture::new("drkinds");
    assert!(f.check().success());
    let out = f.reconcile(&[]);
    assert_eq!(out.exit_code, 0, "nothing to fix on a fresh node:\n{out}");
    assert_eq!(out.stdout_raw, "");
    for d in DRIFTS {
        f.apply(d.acts);
        let out = f.check();
        if let Some(name) = d.check_names {
            assert_eq!(out.error_code(), Some(101), "{}: CHECK:\n{out}", d.what);
            let msg = out.error_msg().unwrap_or_default();
            assert!(
                msg.contains(name),
                "{}: CHECK must name {name:?}:\n{msg}",
                d.what
            );
            assert!(
                msg.starts_with("1 problem(s)"),
                "{}: only that:\n{msg}",
                d.what
            );
        } else {
            assert!(out.success(), "{}: CHECK:\n{out}", d.what);
        }
        let out = f.reconcile(&[]);
        let says = d.reconcile_says.expect("every drift here needs a fix");
        assert_eq!(
            out.exit_code, 1,
            "{}: reconcile found something:\n{out}",
            d.what
        );
        assert!(
            out.stdout_raw.contains(says) && out.stdout_raw.lines().count() == 1,
            "{}: reconcile must say {says:?} (once):\n{out}",
            d.what
        );
        assert!(out.stderr.contains(says), "{}: and log it:\n{out}", d.what);
        f.assert_good(d.what);
        let again = f.reconcile(&[]);
        assert_eq!(again.exit_code, 0, "{}: second round:\n{again}", d.what);
    }
}

#[test]
fn all_drift_at_once_dry_run_changes_nothing_then_one_round_fixes_all() {
    let f = Fixture::new("drall");
    for d in DRIFTS {
        f.apply(d.acts);
    }
    let out = f.check();
    let msg = out.error_msg().unwrap_or_default().to_string();
    assert!(
        msg.starts_with(&format!("{} problem(s)", DRIFTS.len())),
        "{msg}"
    );
    for d in DRIFTS {
        assert!(msg.contains(d.check_names.unwrap()), "{}: {msg}", d.what);
    }
    let drifted = f.snapshot();
    let dry = f.reconcile(&["--dry-run"]);
    assert_eq!(dry.exit_code, 1, "{dry}");
    assert_eq!(dry.stdout_raw.lines().count(), DRIFTS.len(), "{dry}");
    for d in DRIFTS {
        let says = d.reconcile_says.unwrap();
        // "re-created X" → "would re-create X", "removed X" → "would remove X"…
        let (_, object) = says.split_once(' ').unwrap();
        assert!(
            dry.stdout_raw
                .lines()
                .any(|l| l.starts_with("would ") && l.contains(object)),
            "{}: dry run must announce {object:?}:\n{dry}",
            d.what
        );
    }
    assert_state("after --dry-run", &drifted, &f.snapshot(), &|| {
        dry.to_string()
    });
    let out = f.reconcile(&[]);
    assert_eq!(out.exit_code, 1, "{out}");
    assert_eq!(out.stdout_raw.lines().count(), DRIFTS.len(), "{out}");
    f.assert_good("one round");
}

#[test]
fn foreign_objects_outside_owned_tables_are_left_alone_orphans_are_not() {
    let f = Fixture::new("drforeign");
    // Not gwsteer's business: a route in another table, a rule to it, a
    // route in main.
    f.apply(&FOREIGN.map(Act::Ip));
    let foreign = f.snapshot();
    assert!(
        f.check().success(),
        "CHECK ignores foreign objects elsewhere"
    );
    let out = f.reconcile(&[]);
    assert_eq!(out.exit_code, 0, "{out}");
    assert_state("foreign objects", &foreign, &f.snapshot(), &|| {
        out.to_string()
    });

    // gwsteer's protocol without a record (state lost): a rule into the
    // owned table, and a rule and route in a table no record has; a foreign
    // route next to them stays.
    f.apply(&[
        Act::Ip(&[
            "rule",
            "add",
            "priority",
            "1000",
            "from",
            "10.244.1.77",
            "table",
            "100",
            "protocol",
            "211",
        ]),
        Act::Ip(&[
            "rule",
            "add",
            "priority",
            "1000",
            "from",
            "10.244.1.78",
            "table",
            "400",
            "protocol",
            "211",
        ]),
        Act::Ip(&[
            "route", "add", "default", "via", GW4_A, "table", "400", "protocol", "211",
        ]),
        Act::Ip(&[
            "route",
            "add",
            "192.0.2.128/25",
            "via",
            GW4_B,
            "table",
            "400",
        ]),
    ]);
    let out = f.reconcile(&[]);
    assert_eq!(out.exit_code, 1, "{out}");
    for says in [
        "removed orphan inet rule 1000: from 10.244.1.77 lookup 100 proto gwsteer",
        "removed orphan inet rule 1000: from 10.244.1.78 lookup 400 proto gwsteer",
        "removed orphan inet route default table 400 via 192.0.2.254",
    ] {
        assert!(out.stdout_raw.contains(says), "{says:?}:\n{out}");
    }
    assert_eq!(out.stdout_raw.lines().count(), 3, "{out}");
    let left = routes(&f.node.ns, Family::V4, 400);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["dst"], "192.0.2.128/25");
    f.node.lab.ip(
        &f.node.ns,
        ["route", "del", "192.0.2.128/25", "table", "400"],
    );
    assert_state(
        "orphans gone, foreign kept",
        &foreign,
        &f.snapshot(),
        &|| out.to_string(),
    );
}

#[test]
fn reconcile_loop_repairs_on_its_interval() {
    let f = Fixture::new("drloop");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &f.node.ns])
        .arg(gwsteer_bin())
        .args(["reconcile", "--interval", "200ms", "--state-dir"])
        .arg(&f.node.state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start reconcile loop");
    f.apply(&[
        Act::Ip(&["route", "del", "default", "table", "100"]),
        Act::Ip(&[
            "rule", "add", "priority", "500", "from", "10.9.9.9", "table", "100",
        ]),
    ]);
    let repaired = eventually(Duration::from_secs(10), || f.snapshot() == f.good);
    // `ip netns exec` execs gwsteer: this is its pid.
    let _ = child.kill();
    let _ = child.wait();
    assert!(repaired, "the loop did not repair the node");
    f.assert_good("loop");
}

/// `(family, table, set)` of the nftables set that holds `addr`.
fn set_holding(ns: &str, addr: &str) -> (String, String, String) {
    let rs = nft_ruleset(ns);
    for item in rs["nftables"].as_array().into_iter().flatten() {
        let set = &item["set"];
        if set["elem"].to_string().contains(&format!("\"{addr}\"")) {
            let s = |k: &str| set[k].as_str().unwrap().to_string();
            return (s("family"), s("table"), s("name"));
        }
    }
    panic!("no nftables set holds {addr}: {rs}");
}

/// The chains of nftables table `family table` that have rules.
fn chains_with_rules(ns: &str, family: &str, table: &str) -> Vec<String> {
    let rs = nft_ruleset(ns);
    let mut out: Vec<String> = rs["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("rule"))
        .filter(|r| r["family"] == family && r["table"] == table)
        .map(|r| r["chain"].as_str().unwrap().to_string())
        .collect();
    out.dedup();
    out
}

#[test]
fn connmark_firewall_objects_drift_is_named_and_undone() {
    let f = Fixture::with("drconn", connmark_lb(), vec![160]);
    assert_eq!(f.node.sysctl(SRC_VALID_MARK), "1");
    assert!(f.check().success());
    let ns = f.node.ns.clone();
    let (family, table, set) = set_holding(&ns, POD_V4);
    let chains = chains_with_rules(&ns, &family, &table);
    assert!(!chains.is_empty(), "the policy has rules");
    let nft = |args: &[&str]| {
        f.node.lab.exec(&ns, "nft", args);
    };
    type Drift<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a [&'a str]);
    let drifts: Vec<Drift> = vec![
        (
            "pod's set element deleted",
            Box::new(|| {
                let elem = format!("{{ {POD_V4} }}");
                nft(&["delete", "element", &family, &table, &set, &elem]);
            }),
            &["missing nftables firewall member 10.244.1.5 of drift/lb"],
        ),
        (
            "policy chain flushed",
            Box::new(|| nft(&["flush", "chain", &family, &table, &chains[0]])),
            &["drifted nftables firewall policy drift/lb mark 0x14"],
        ),
        (
            "whole table deleted",
            Box::new(|| nft(&["delete", "table", &family, &table])),
            &[
                "missing nftables firewall member 10.244.1.5 of drift/lb",
                "missing nftables firewall member fd00:244:0:1::5 of drift/lb",
                "missing nftables firewall policy drift/lb mark 0x14",
            ],
        ),
        (
            "fwmark rule deleted",
            Box::new(|| {
                f.node.lab.ip(
                    &ns,
                    [
                        "rule", "del", "priority", "1600", "fwmark", "0x14", "table", "160",
                    ],
                );
            }),
            &["missing inet rule 1600: from all fwmark 0x14 lookup 160"],
        ),
        (
            "src_valid_mark changed",
            Box::new(|| f.node.lab.sysctl(&ns, SRC_VALID_MARK, "0")),
            &["drifted sysctl net.ipv4.conf.all.src_valid_mark = 1: is 0"],
        ),
    ];
    for (what, apply, names) in &drifts {
        apply();
        let out = f.check();
        assert_eq!(out.error_code(), Some(101), "{what}: CHECK:\n{out}");
        let msg = out.error_msg().unwrap_or_default();
        for name in *names {
            assert!(
                msg.contains(name),
                "{what}: CHECK must name {name:?}:\n{msg}"
            );
        }
        assert!(
            msg.starts_with(&format!("{} problem(s)", names.len())),
            "{what}: only that:\n{msg}"
        );
        let out = f.reconcile(&[]);
        assert_eq!(out.exit_code, 1, "{what}:\n{out}");
        assert_eq!(
            out.stdout_raw.lines().count(),
            names.len(),
            "{what}:\n{out}"
        );
        f.assert_good(what);
    }
}

#[test]
fn store_drift_holds_are_repaired() {
    let f = Fixture::new("drholds");
    let holds = f.node.state.join(NET).join("holds/steering.peers");
    std::fs::remove_file(holds.join("c1@eth0")).unwrap();
    std::fs::write(holds.join("gone@eth0"), b"").unwrap();
    let out = f.reconcile(&["--dry-run"]);
    assert_eq!(out.exit_code, 1, "{out}");
    assert!(f.snapshot() != f.good, "dry run changed the store");
    let out = f.reconcile(&[]);
    assert_eq!(out.exit_code, 1, "{out}");
    for says in [
        "re-created drift: missing hold of steering.peers by attachment c1/eth0",
        "dropped drift: orphan hold of steering.peers by gone@eth0 (no record)",
    ] {
        assert!(out.stdout_raw.contains(says), "{says:?}:\n{out}");
    }
    assert_eq!(out.stdout_raw.lines().count(), 2, "{out}");
    f.assert_good("holds");
}
