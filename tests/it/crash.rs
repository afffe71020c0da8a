//! Crash safety, by fault injection: gwsteer is killed (SIGKILL, by the
//! test-only hook `GWSTEER_TEST_ABORT_AFTER=k`, src/fault.rs) right after
//! the k-th state change (kernel change or state store write) of an ADD or a
//! DEL, for every k up to the number of changes the verb makes, and for
//! several policy shapes. After each kill the node must converge:
//!
//! - ADD killed, then (a) ADD retried → exactly the state of a clean ADD,
//!   then DEL → the state of a node that never saw the pod; (b) DEL → that
//!   clean state; (c) GC without the pod in `cni.dev/valid-attachments` →
//!   that clean state.
//! - DEL killed, then DEL retried, or GC → the clean state.
//! - All of the above again with a bystander pod that holds the same node
//!   groups, in the same network or (shape `crxnet`) in another network
//!   that needs the same node-wide sysctl: it must keep every object and
//!   record it had.
//!
//! Shapes: dual-stack with exclusions; multipath (owns the node-wide
//! `net.ipv4.fib_multipath_use_neigh`); two policies; a bystander in
//! another network sharing the sysctl; `match: "connmark"` (nftables
//! chains and sets, fwmark rules, `src_valid_mark`).
//!
//! "State" is read back from the kernel and the state dir
//! (`reliability::Node::snapshot`): every rule of both families, the routes of
//! the owned tables, the sysctls gwsteer may own (restored to their earlier
//! values), the nftables ruleset, and every file of the store (records,
//! groups, holds; no temporary or set-aside files). Each is compared with snapshots taken
//! from clean runs, which are themselves checked against the expected rules.
//!
//! The shapes run in parallel, one node namespace each; every call invokes
//! the binary directly.

use std::time::Instant;

use crate::support::CniOutcome;
use crate::support::reliability::*;
use serde_json::{Value, json};

/// Upper bound on the changes one verb makes here (guards the k loops).
const MAX_CHANGES: usize = 64;

#[derive(Clone, Copy, Debug)]
enum Recovery {
    RetryAdd,
    Del,
    Gc,
}

struct Shape {
    tag: &'static str,
    steering: Value,
    tables: Vec<u32>,
    /// gwsteer rules one pod gets.
    rules_per_pod: usize,
    /// gwsteer rules made once for all pods (fwmark rules).
    node_rules: usize,
    /// Whether the policy owns the multipath sysctl.
    multipath: bool,
    /// The bystander's policies when it is in another network (state dir
    /// shared); `None`: the bystander is in the pod's network.
    other_network: Option<Value>,
}

fn shapes() -> Vec<Shape> {
    vec![
        Shape {
            tag: "crdual",
            steering: json!([{
                "name": "oam",
                "table": 100,
                "gateways": [{"via": GW4_A, "dev": "eth1"}, {"via": GW6_A, "dev": "eth1"}],
                "exclude": ["10.244.0.0/16", "10.96.0.0/12", "fd00:244::/48"]
            }]),
            tables: vec![100],
            rules_per_pod: 5,
            node_rules: 0,
            multipath: false,
            other_network: None,
        },
        Shape {
            tag: "crmpath",
            steering: json!([{
                "name": "peers",
                "table": 110,
                "priority": 1100,
                "gateways": [
                    {"via": GW4_A, "dev": "eth1"}, {"via": GW4_B, "dev": "eth1", "weight": 2},
                    {"via": GW6_A, "dev": "eth1"}, {"via": GW6_B, "dev": "eth1"}
                ],
                "exclude": ["10.244.0.0/16", "fd00:244::/48"]
            }]),
            tables: vec![110],
            rules_per_pod: 4,
            node_rules: 0,
            multipath: true,
            other_network: None,
        },
        Shape {
            tag: "crtwo",
            steering: json!([
                {
                    "name": "oam",
                    "table": 120,
                    "priority": 1200,
                    "gateways": [{"via": GW4_A}, {"via": GW6_A}],
                    "exclude": ["10.244.0.0/16"]
                },
                {
                    "name": "peers",
                    "table": 130,
                    "priority": 1300,
                    "gateways": [{"via": GW4_A}, {"via": GW4_B}, {"via": GW6_B}],
                    "destinations": ["0.0.0.0/0", "198.51.100.0/24", "::/0"]
                }
            ]),
            tables: vec![120, 130],
            rules_per_pod: 5,
            node_rules: 0,
            multipath: true,
            other_network: None,
        },
        // The bystander in another network that needs the same node-wide
        // sysctl: a killed ADD or DEL of the pod must leave it set.
        Shape {
            tag: "crxnet",
            steering: json!([{
                "name": "peers",
                "table": 140,
                "priority": 1400,
                "gateways": [{"via": GW4_A}, {"via": GW4_B}, {"via": GW6_A}]
            }]),
            tables: vec![140, 150],
            rules_per_pod: 2,
            node_rules: 0,
            multipath: true,
            other_network: Some(json!([{
                "name": "peers",
                "table": 150,
                "priority": 1500,
                "gateways": [{"via": GW4_A}, {"via": GW4_B}]
            }])),
        },
        // connmark: per pod only a set element (nftables), a node-level
        // fwmark rule per family, firewall chains, and src_valid_mark.
        Shape {
            tag: "crconn",
            steering: connmark_lb(),
            tables: vec![160],
            rules_per_pod: 0,
            node_rules: 2,
            multipath: false,
            other_network: None,
        },
    ]
}

/// The four reference states of a shape's node.
struct Baselines {
    /// Only the pod under test.
    one: Value,
    /// No pod (after ADD and DEL: the store's directories exist).
    empty: Value,
    /// Only the bystander.
    bystander: Value,
    /// Bystander and pod under test.
    both: Value,
}

struct Run<'a> {
    shape: &'a Shape,
    node: Node,
    config: Value,
    by_config: Value,
    pod: Value,
    by: Value,
    trials: usize,
}

const POD: &str = "c1";
const BY: &str = "by";

impl Run<'_> {
    fn snapshot(&self) -> Value {
        self.node.snapshot(&self.shape.tables)
    }

    fn expect(&self, what: &str, want: &Value) {
        let got = self.snapshot();
        assert_state(&format!("{}: {what}", self.shape.tag), want, &got, &|| {
            self.node.log_tail(30)
        });
    }

    fn ok(&self, out: CniOutcome, what: &str) {
        assert!(
            out.success(),
            "{}: {what} failed:\n{out}\n--- log ---\n{}",
            self.shape.tag,
            self.node.log_tail(30)
        );
    }

    fn add(&self, cid: &str) {
        let (config, prev) = self.of(cid);
        self.ok(self.node.add(cid, config, prev), &format!("ADD {cid}"));
    }

    fn del(&self, cid: &str) {
        let (config, prev) = self.of(cid);
        self.ok(self.node.del(cid, config, prev), &format!("DEL {cid}"));
    }

    fn of(&self, cid: &str) -> (&Value, &Value) {
        if cid == BY {
            (&self.by_config, &self.by)
        } else {
            (&self.config, &self.pod)
        }
    }

    /// GC of the pod's network (the bystander, if it is in another
    /// network, is not in the list and must survive all the same).
    fn gc(&self, valid: &[&str]) {
        let valid: Vec<&str> = valid
            .iter()
            .copied()
            .filter(|c| *c != BY || self.shape.other_network.is_none())
            .collect();
        self.ok(self.node.gc(&self.config, &valid), &format!("GC {valid:?}"));
    }

    /// `verb` for the pod under test, killed after `k` changes. `None`: it
    /// made fewer than `k` changes and finished.
    fn killed(&self, verb: &str, k: usize) -> Option<()> {
        let env = [(ABORT_AFTER, k.to_string())];
        let out = self
            .node
            .call(verb, POD, &self.config, Some(&self.pod), &env);
        if out.success() {
            return None;
        }
        assert_eq!(
            out.exit_code, KILLED,
            "{}: {verb} with {ABORT_AFTER}={k}: expected the hook's SIGKILL:\n{out}",
            self.shape.tag
        );
        assert!(
            out.stdout_raw.is_empty(),
            "{}: a killed {verb} printed something:\n{out}",
            self.shape.tag
        );
        Some(())
    }

    fn baselines(&self) -> Baselines {
        // Every network's state directory exists from here on.
        self.add(BY);
        self.del(BY);
        self.add(POD);
        let one = self.snapshot();
        let rules = self.node.gw_rules();
        assert_eq!(
            rules.len(),
            self.shape.node_rules + self.shape.rules_per_pod,
            "{}: rules of one pod: {rules:?}",
            self.shape.tag
        );
        let own = if self.shape.other_network.is_some() {
            1
        } else {
            self.shape.tables.len()
        };
        for t in &self.shape.tables[..own] {
            assert!(
                !self.node.table(*t).is_empty(),
                "{}: table {t} empty",
                self.shape.tag
            );
        }
        let want_sysctl = if self.shape.multipath { "1" } else { "0" };
        assert_eq!(self.node.sysctl(MULTIPATH_SYSCTL), want_sysctl);
        if self.shape.node_rules > 0 {
            // connmark: the mark must pass reverse-path checks, and the
            // pod's address is in the policy's set.
            assert_eq!(self.node.sysctl(SRC_VALID_MARK), "1");
            assert!(
                one["nftables"].to_string().contains("10.244.1.5"),
                "{}: no set element: {}",
                self.shape.tag,
                one["nftables"]
            );
        }
        self.del(POD);
        let empty = self.snapshot();
        assert!(self.node.gw_rules().is_empty());
        for t in &self.shape.tables {
            assert!(self.node.table(*t).is_empty(), "table {t} left");
        }
        assert_eq!(self.node.sysctl(MULTIPATH_SYSCTL), "0", "sysctl restored");
        assert_eq!(self.node.sysctl(SRC_VALID_MARK), "0", "sysctl restored");
        assert_eq!(
            empty["nftables"],
            json!({"nftables": []}),
            "{}: firewall left",
            self.shape.tag
        );
        // Only directories are left (the network's, and the node scope's
        // when a shared sysctl was held).
        let store = empty["store"].as_object().unwrap();
        assert!(
            store.contains_key("crash/attachments") && store.values().all(|v| v == "dir"),
            "{}: store after DEL: {store:?}",
            self.shape.tag
        );
        self.add(BY);
        let bystander = self.snapshot();
        if self.shape.multipath {
            assert_eq!(self.node.sysctl(MULTIPATH_SYSCTL), "1");
        }
        self.add(POD);
        let both = self.snapshot();
        if self.shape.other_network.is_none() {
            assert_eq!(
                self.node.gw_rules().len(),
                self.shape.node_rules + 2 * self.shape.rules_per_pod
            );
        }
        self.del(POD);
        self.expect("DEL with a bystander", &bystander);
        self.del(BY);
        self.expect("last DEL", &empty);
        // The other order: the pod's network first in, first out; what is
        // node-wide (the sysctl, its value before) passes to the bystander.
        self.add(POD);
        self.add(BY);
        self.expect("ADD after the bystander", &both);
        self.del(POD);
        self.expect("first in, first out", &bystander);
        self.del(BY);
        self.expect("last DEL", &empty);
        Baselines {
            one,
            empty,
            bystander,
            both,
        }
    }

    /// The node's state without the pod and with it, and the valid
    /// attachments of a GC that drops it: with the bystander (added here)
    /// when `with_by`.
    fn around_pod<'b>(
        &self,
        b: &'b Baselines,
        with_by: bool,
    ) -> (&'b Value, &'b Value, &'static [&'static str]) {
        if with_by {
            self.add(BY);
            (&b.bystander, &b.both, &[BY])
        } else {
            (&b.empty, &b.one, &[])
        }
    }

    /// Kill ADD of the pod at every k, recovering with `how`; with the
    /// bystander present when `with_by`. Returns how many changes ADD makes.
    fn add_killed(&mut self, b: &Baselines, how: Recovery, with_by: bool) -> usize {
        let (before, after, valid) = self.around_pod(b, with_by);
        for k in 1..=MAX_CHANGES {
            if self.killed("ADD", k).is_none() {
                self.expect(&format!("ADD with {ABORT_AFTER}={k} finished"), after);
                self.del(POD);
                self.expect("DEL", before);
                if with_by {
                    self.del(BY);
                }
                return k - 1;
            }
            self.trials += 1;
            let what = format!("ADD killed after change {k}, then {how:?} (bystander: {with_by})");
            match how {
                Recovery::RetryAdd => {
                    self.add(POD);
                    self.expect(&what, after);
                    self.del(POD);
                }
                Recovery::Del => self.del(POD),
                Recovery::Gc => self.gc(valid),
            }
            self.expect(&what, before);
        }
        panic!("{}: ADD never finished", self.shape.tag);
    }

    /// Kill DEL of the pod at every k, recovering with `how` (DEL or GC).
    fn del_killed(&mut self, b: &Baselines, how: Recovery, with_by: bool) -> usize {
        let (before, after, valid) = self.around_pod(b, with_by);
        for k in 1..=MAX_CHANGES {
            self.add(POD);
            self.expect("ADD", after);
            if self.killed("DEL", k).is_none() {
                self.expect(&format!("DEL with {ABORT_AFTER}={k} finished"), before);
                if with_by {
                    self.del(BY);
                }
                return k - 1;
            }
            self.trials += 1;
            let what = format!("DEL killed after change {k}, then {how:?} (bystander: {with_by})");
            match how {
                Recovery::Del => self.del(POD),
                Recovery::Gc => self.gc(valid),
                Recovery::RetryAdd => unreachable!("DEL is recovered by DEL or GC"),
            }
            self.expect(&what, before);
        }
        panic!("{}: DEL never finished", self.shape.tag);
    }
}

/// Runs every kill point of one shape; returns (trials, ADD changes, DEL changes).
fn run_shape(shape: &Shape) -> (usize, usize, usize) {
    let node = Node::new(shape.tag);
    let config = node.config("crash", shape.steering.clone());
    let by_config = match &shape.other_network {
        Some(steering) => node.config("crash-by", steering.clone()),
        None => config.clone(),
    };
    let pod = prev_result("10.244.1", "fd00:244:0:1", 5, &node.pod_netns);
    let by = prev_result("10.244.1", "fd00:244:0:1", 9, &node.pod_netns);
    let mut run = Run {
        shape,
        node,
        config,
        by_config,
        pod,
        by,
        trials: 0,
    };
    let b = run.baselines();
    let mut add_changes = Vec::new();
    let mut del_changes = Vec::new();
    for with_by in [false, true] {
        for how in [Recovery::RetryAdd, Recovery::Del, Recovery::Gc] {
            add_changes.push((with_by, run.add_killed(&b, how, with_by)));
        }
        for how in [Recovery::Del, Recovery::Gc] {
            del_changes.push((with_by, run.del_killed(&b, how, with_by)));
        }
    }
    // Every recovery of a kind saw the same number of kill points.
    for changes in [&add_changes, &del_changes] {
        for with_by in [false, true] {
            let n: Vec<usize> = changes
                .iter()
                .filter(|(b, _)| *b == with_by)
                .map(|(_, n)| *n)
                .collect();
            assert!(n.windows(2).all(|w| w[0] == w[1]), "{}: {n:?}", shape.tag);
        }
    }
    run.expect("after every trial", &b.empty);
    (run.trials, add_changes[0].1, del_changes[0].1)
}

#[test]
fn killed_add_or_del_converges_after_retry_del_or_gc() {
    let started = Instant::now();
    let shapes = shapes();
    let results: Vec<(usize, usize, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = shapes
            .iter()
            .map(|shape| s.spawn(move || run_shape(shape)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut total = 0;
    for (shape, (trials, add, del)) in shapes.iter().zip(&results) {
        eprintln!(
            "{}: ADD makes {add} state changes, DEL {del}; {trials} kill trials",
            shape.tag
        );
        assert!(*add >= 6 && *del >= 6, "{}: too few changes", shape.tag);
        total += trials;
    }
    eprintln!(
        "{total} kill trials in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(total >= 200, "only {total} trials");
}
