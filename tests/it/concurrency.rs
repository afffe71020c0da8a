//! Concurrency on one node: 100 ADDs started at once (50 pods in each of two
//! networks that share one state dir, each network its own table and
//! priority), then 100 DELs at once, while other threads keep running CHECK
//! on pods that are up and GC with the runtime's view of the valid
//! attachments. Calls for one network serialise on its lock; a call that
//! gives up waiting (CNI code 11, "try again later") is retried, as a
//! runtime does.
//!
//! Both networks' policies are multipath, so they share the node-wide
//! `net.ipv4.fib_multipath_use_neigh`, set by the first pod of either and
//! restored by the last.
//!
//! Proven: every ADD, DEL, CHECK and GC succeeds (after retries of code 11
//! only); after the ADDs the kernel holds exactly the expected rules, each
//! once, and the expected table routes, and the store exactly one record
//! and one hold per pod; after the DELs nothing of gwsteer's is left in the
//! kernel or the store. Lock waits are read from the debug log ("state store
//! lock taken in N µs" / "waited N ms") and must stay under the lock timeout.
//!
//! The runtime model: a pod's operations are serialised (as containerd does
//! per sandbox), so CHECK runs only on a pod whose ADD finished and whose DEL
//! has not started; GC's `cni.dev/valid-attachments` lists every pod that
//! is not being deleted (pods about to be added included: the runtime knows
//! them before it calls ADD), so GC may race a DEL but never an ADD.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::reliability::*;
use crate::support::*;
use serde_json::{Value, json};

const PODS_PER_NET: u16 = 50;
const LOCK_TIMEOUT_MS: u64 = 10_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Pending,
    Added,
    Deleting,
    Deleted,
}

struct Net {
    name: &'static str,
    table: u32,
    priority: u32,
    v4: &'static str,
    v6: &'static str,
    config: Value,
}

struct Pod {
    net: usize,
    cid: String,
    prev: Value,
    phase: Mutex<Phase>,
}

#[derive(Default)]
struct Counts {
    calls: AtomicUsize,
    retries: AtomicUsize,
    checks: AtomicUsize,
    gcs: AtomicUsize,
}

struct World {
    node: Node,
    nets: Vec<Net>,
    pods: Vec<Pod>,
    counts: Counts,
}

impl World {
    /// One call, retried while it fails with code 11; any other failure panics.
    fn call(&self, what: &str, f: impl Fn() -> CniOutcome) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = f();
            self.counts.calls.fetch_add(1, Ordering::Relaxed);
            if out.success() {
                return;
            }
            if out.error_code() == Some(11) && Instant::now() < deadline {
                self.counts.retries.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            panic!("{what} failed:\n{out}");
        }
    }

    fn add(&self, p: &Pod) {
        let net = &self.nets[p.net];
        self.call(&format!("ADD {}", p.cid), || {
            self.node.add(&p.cid, &net.config, &p.prev)
        });
        *p.phase.lock().unwrap() = Phase::Added;
    }

    fn del(&self, p: &Pod) {
        *p.phase.lock().unwrap() = Phase::Deleting;
        let net = &self.nets[p.net];
        self.call(&format!("DEL {}", p.cid), || {
            self.node.del(&p.cid, &net.config, &p.prev)
        });
        *p.phase.lock().unwrap() = Phase::Deleted;
    }

    /// CHECK every pod that is up, holding its lock so its DEL waits.
    fn check_round(&self) {
        for p in &self.pods {
            let phase = p.phase.lock().unwrap();
            if *phase == Phase::Added {
                let net = &self.nets[p.net];
                self.call(&format!("CHECK {}", p.cid), || {
                    self.node.check(&p.cid, &net.config, &p.prev)
                });
                self.counts.checks.fetch_add(1, Ordering::Relaxed);
            }
            drop(phase);
        }
    }

    /// GC of each network with every pod not being deleted as valid.
    fn gc_round(&self) {
        for (i, net) in self.nets.iter().enumerate() {
            let valid: Vec<&str> = self
                .pods
                .iter()
                .filter(|p| p.net == i)
                .filter(|p| matches!(*p.phase.lock().unwrap(), Phase::Pending | Phase::Added))
                .map(|p| p.cid.as_str())
                .collect();
            self.call(&format!("GC {}", net.name), || {
                self.node.gc(&net.config, &valid)
            });
            self.counts.gcs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// All pods run `op` at once while CHECK and GC loop beside them.
    fn storm(&self, op: fn(&World, &Pod)) -> Duration {
        let started = Instant::now();
        let done = AtomicBool::new(false);
        let go = Barrier::new(self.pods.len() + 3);
        thread::scope(|s| {
            let workers: Vec<_> = self
                .pods
                .iter()
                .map(|p| {
                    let go = &go;
                    s.spawn(move || {
                        go.wait();
                        op(self, p);
                    })
                })
                .collect();
            for _ in 0..2 {
                let (go, done) = (&go, &done);
                s.spawn(move || {
                    go.wait();
                    while !done.load(Ordering::SeqCst) {
                        self.check_round();
                    }
                });
            }
            let (go, done) = (&go, &done);
            s.spawn(move || {
                go.wait();
                while !done.load(Ordering::SeqCst) {
                    self.gc_round();
                    thread::sleep(Duration::from_millis(5));
                }
            });
            for w in workers {
                if let Err(e) = w.join() {
                    done.store(true, Ordering::SeqCst);
                    std::panic::resume_unwind(e);
                }
            }
            done.store(true, Ordering::SeqCst);
        });
        started.elapsed()
    }

    fn expected_rules(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (i, p) in self.pods.iter().enumerate() {
            let net = &self.nets[p.net];
            let n = i as u16 % PODS_PER_NET + 2;
            let (pr, ex) = (net.priority, net.priority - 1);
            let (v4, v6) = (format!("{}.{n}", net.v4), format!("{}::{n:x}", net.v6));
            out.insert(format!(
                "inet {ex}: from {v4} to {}.0.0/16 lookup main",
                &net.v4[..6]
            ));
            out.insert(format!("inet {pr}: from {v4} lookup {}", net.table));
            out.insert(format!(
                "inet6 {ex}: from {v6} to {}::/48 lookup main",
                &net.v6[..8]
            ));
            out.insert(format!("inet6 {pr}: from {v6} lookup {}", net.table));
        }
        out
    }

    /// gwsteer's rules as a list: duplicates would show.
    fn rule_list(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (family, name) in [(Family::V4, "inet"), (Family::V6, "inet6")] {
            for r in rules(&self.node.ns, family) {
                if matches!(r["protocol"].as_str(), Some("211" | "gwsteer")) {
                    out.push(rule_text(name, &r));
                }
            }
        }
        out
    }

    fn files(&self, net: &Net, sub: &str) -> BTreeSet<String> {
        match std::fs::read_dir(self.node.state.join(net.name).join(sub)) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => BTreeSet::new(),
        }
    }
}

/// (calls that logged a lock wait, the longest wait) from the debug log.
fn lock_waits(log: &str) -> (usize, Duration) {
    let mut n = 0;
    let mut longest = Duration::ZERO;
    for line in log.lines() {
        let wait = if let Some(rest) = line.split("state store lock taken in ").nth(1) {
            rest.split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_micros)
        } else if let Some(rest) = line.split("waited ").nth(1) {
            rest.split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
        } else {
            None
        };
        if let Some(w) = wait {
            n += 1;
            longest = longest.max(w);
        }
    }
    (n, longest)
}

#[test]
fn hundred_parallel_adds_then_dels_with_check_and_gc() {
    let node = Node::new("ccstorm");
    let mut nets = Vec::new();
    for (name, table, priority, v4, v6) in [
        ("cc-a", 100, 1000, "10.244.1", "fd00:244:0:1"),
        ("cc-b", 200, 2000, "10.245.1", "fd00:245:0:1"),
    ] {
        let exclude = [format!("{}.0.0/16", &v4[..6]), format!("{}::/48", &v6[..8])];
        let mut config = node.config(
            name,
            json!([multipath_policy(
                "oam",
                table,
                Some(priority),
                [&exclude[0], &exclude[1]]
            )]),
        );
        config["lockTimeoutMs"] = json!(LOCK_TIMEOUT_MS);
        nets.push(Net {
            name,
            table,
            priority,
            v4,
            v6,
            config,
        });
    }
    let mut pods = Vec::new();
    for (i, net) in nets.iter().enumerate() {
        for n in 2..PODS_PER_NET + 2 {
            pods.push(Pod {
                net: i,
                cid: format!("{}-{n}", net.name),
                prev: prev_result(net.v4, net.v6, n, &node.pod_netns),
                phase: Mutex::new(Phase::Pending),
            });
        }
    }
    let world = World {
        node,
        nets,
        pods,
        counts: Counts::default(),
    };

    // ---- 100 ADDs at once.
    let took = world.storm(World::add);
    let list = world.rule_list();
    let set: BTreeSet<String> = list.iter().cloned().collect();
    assert_eq!(list.len(), set.len(), "a rule made twice: {list:?}");
    let want = world.expected_rules();
    assert_eq!(want.len(), 400);
    if set != want {
        panic!(
            "rules after the ADDs: missing {:?}, unexpected {:?}",
            want.difference(&set).collect::<Vec<_>>(),
            set.difference(&want).collect::<Vec<_>>()
        );
    }
    for net in &world.nets {
        let routes = world.node.table(net.table);
        let dsts: Vec<&str> = routes.iter().filter_map(|r| r["dst"].as_str()).collect();
        assert_eq!(
            dsts,
            ["default", "default"],
            "table {}: {routes:?}",
            net.table
        );
        let records = world.files(net, "attachments");
        let cids: BTreeSet<String> = world
            .pods
            .iter()
            .filter(|p| world.nets[p.net].name == net.name)
            .map(|p| p.cid.clone())
            .collect();
        let want_records: BTreeSet<String> =
            cids.iter().map(|c| format!("{c}@eth0.json")).collect();
        assert_eq!(
            records, want_records,
            "{}: a record lost or extra",
            net.name
        );
        let holds = world.files(net, "holds/steering.oam");
        let want_holds: BTreeSet<String> = cids.iter().map(|c| format!("{c}@eth0")).collect();
        assert_eq!(holds, want_holds, "{}: holds", net.name);
        for c in &cids {
            let text = std::fs::read_to_string(
                world
                    .node
                    .state
                    .join(net.name)
                    .join("attachments")
                    .join(format!("{c}@eth0.json")),
            )
            .unwrap();
            let r: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(r["objects"].as_array().map(Vec::len), Some(4), "{c}: {r}");
        }
    }
    // Both networks need the node-wide multipath sysctl: one node-scope
    // group, held once by each network.
    assert_eq!(world.node.sysctl(MULTIPATH_SYSCTL), "1");
    let node_holds = std::fs::read_dir(
        world
            .node
            .state
            .join(".node/holds/sysctl.net.ipv4.fib_multipath_use_neigh"),
    )
    .map(|d| d.count())
    .unwrap_or(0);
    assert_eq!(node_holds, 2, "one node-wide hold per network");
    eprintln!("100 parallel ADDs: {:.2} s", took.as_secs_f64());

    // ---- 100 DELs at once.
    let took = world.storm(World::del);
    assert_eq!(world.rule_list(), Vec::<String>::new(), "rules left");
    for net in &world.nets {
        assert_eq!(
            world.node.table(net.table),
            Vec::<Value>::new(),
            "table {}",
            net.table
        );
        assert_eq!(
            world.files(net, "attachments"),
            BTreeSet::new(),
            "{}",
            net.name
        );
        assert_eq!(world.files(net, "holds"), BTreeSet::new(), "{}", net.name);
        assert_eq!(world.files(net, "nodes"), BTreeSet::new(), "{}", net.name);
        assert!(!world.node.state.join(net.name).join("corrupt").exists());
    }
    assert_eq!(world.node.sysctl(MULTIPATH_SYSCTL), "0", "sysctl restored");
    let node_scope = store_snapshot(&world.node.state.join(".node"));
    assert!(
        node_scope.as_object().unwrap().values().all(|v| v == "dir"),
        "node-wide state left: {node_scope}"
    );
    eprintln!("100 parallel DELs: {:.2} s", took.as_secs_f64());

    let log = std::fs::read_to_string(&world.node.log).unwrap();
    let (n, longest) = lock_waits(&log);
    let calls = world.counts.calls.load(Ordering::Relaxed);
    eprintln!(
        "{calls} calls ({} CHECK, {} GC which removed {} attachment(s) mid-DEL, {} retried after code 11); \
         {n} lock waits logged, longest {} ms",
        world.counts.checks.load(Ordering::Relaxed),
        world.counts.gcs.load(Ordering::Relaxed),
        log.matches("stale attachment").count(),
        world.counts.retries.load(Ordering::Relaxed),
        longest.as_millis()
    );
    assert!(n >= 200, "every verb logs its lock wait at debug: {n}");
    assert!(
        longest < Duration::from_millis(LOCK_TIMEOUT_MS),
        "a wait beyond the timeout: {longest:?}"
    );
    let per_net: BTreeMap<&str, usize> = world
        .nets
        .iter()
        .map(|n| (n.name, log.matches(&format!("net={}", n.name)).count()))
        .collect();
    assert!(per_net.values().all(|c| *c > 0), "{per_net:?}");
}
