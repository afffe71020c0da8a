//! The CNI lifecycle of gwsteer against the real kernel, one node namespace
//! per test: DEL that never fails because something is already gone, CHECK
//! that names exactly what is missing or drifted, GC by
//! `cni.dev/valid-attachments`, STATUS, VERSION, the state store as seen
//! from outside (modes, corrupt records, a held lock), and stdout discipline
//! (every call in this file prints nothing or exactly one JSON document).
//!
//! gwsteer is invoked directly, as a runtime does, with a bridge-shaped
//! `prevResult`; the CHECK test takes it from the real reference `bridge`.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::support::*;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

const NET: &str = "lc-net";
const TABLE: u32 = 100;
const GW4: &str = "192.0.2.254";
const GW6: &str = "fd00:192::fe";
const OTHER_GW4: &str = "192.0.2.253";
const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

// ---------------------------------------------------------------------------
// Stdout discipline, checked on every gwsteer call of this file.

/// Every JSON document on `raw`, in order; panics if anything else is there.
fn json_docs(raw: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(raw)
        .into_iter::<Value>()
        .map(|d| d.unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {raw:?}")))
        .collect()
}

/// Success: DEL/CHECK/GC/STATUS print nothing, ADD/VERSION exactly one JSON
/// object. Failure: exactly one CNI error object. Never a panic.
fn assert_disciplined(call: &CniCall, out: &CniOutcome) {
    let what = format!("{} {}", call.command, call.container_id);
    assert!(
        !out.stderr.contains("panicked"),
        "{what}: gwsteer panicked:\n{out}"
    );
    assert!(
        (0..128).contains(&out.exit_code),
        "{what}: killed or timed out:\n{out}"
    );
    let docs = json_docs(&out.stdout_raw);
    if out.success() {
        if matches!(call.command.as_str(), "DEL" | "CHECK" | "GC" | "STATUS") {
            assert!(
                out.stdout_raw.is_empty(),
                "{what}: success must print nothing:\n{out}"
            );
        } else {
            assert_eq!(docs.len(), 1, "{what}: one JSON document:\n{out}");
            assert!(
                docs[0]["cniVersion"].is_string(),
                "{what}: result without cniVersion:\n{out}"
            );
        }
    } else {
        assert_eq!(docs.len(), 1, "{what}: one CNI error document:\n{out}");
        let e = &docs[0];
        assert!(
            e["cniVersion"]
                .as_str()
                .is_some_and(|v| VERSIONS.contains(&v))
                && e["code"].is_u64()
                && e["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: not a CNI error object:\n{out}"
        );
    }
}

// ---------------------------------------------------------------------------
// The node.

/// A node namespace whose uplink `eth1` (192.0.2.1/24, fd00:192::1/64) holds
/// the policy's gateways, with a per-test state dir (not created: gwsteer
/// makes it) and log file.
struct Node {
    lab: Lab,
    ns: String,
    state: PathBuf,
    log: PathBuf,
}

impl Node {
    fn new(tag: &str) -> Node {
        let lab = Lab::new(tag);
        let ns = uplink_node(&lab);
        let state = lab.tmpdir().join("state");
        let log = lab.tmpdir().join("gwsteer.log");
        Node {
            lab,
            ns,
            state,
            log,
        }
    }

    /// A pod namespace; returns its `CNI_NETNS` path.
    fn pod(&self, name: &str) -> String {
        netns_path(&self.lab.netns(name))
    }

    /// The plugin's config as the runtime hands it over (no prevResult yet).
    fn config(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": NET,
            "type": "gwsteer",
            "stateDir": self.state,
            "logFile": self.log,
            "steering": [{
                "name": "oam",
                "table": TABLE,
                "gateways": [{"via": GW4}, {"via": GW6}],
                "exclude": ["10.244.0.0/16", "fd00:244::/48"]
            }]
        })
    }

    /// Runs gwsteer in the node namespace and checks stdout discipline.
    fn gw(&self, call: &CniCall) -> CniOutcome {
        let out = invoke(&self.ns, &gwsteer_bin(), call);
        assert_disciplined(call, &out);
        out
    }

    fn add(&self, cid: &str, netns: &str, config: &Value, prev: &Value) -> Value {
        let call = CniCall::new("ADD", cid, "eth0", with_prev(config, prev))
            .netns(netns)
            .cni_args(&k8s_cni_args("default", cid, cid));
        self.gw(&call).expect_ok(&format!("ADD {cid}"))
    }

    fn del(&self, cid: &str, netns: Option<&str>, config: &Value, prev: Option<&Value>) {
        let config = match prev {
            Some(p) => with_prev(config, p),
            None => config.clone(),
        };
        let mut call = CniCall::new("DEL", cid, "eth0", config);
        call.netns_path = netns.map(str::to_string);
        self.gw(&call).expect_ok(&format!("DEL {cid}"));
    }

    fn check(&self, cid: &str, netns: &str, config: &Value, prev: &Value) -> CniOutcome {
        let call = CniCall::new("CHECK", cid, "eth0", with_prev(config, prev)).netns(netns);
        self.gw(&call)
    }

    fn gc(&self, config: Value) -> CniOutcome {
        self.gw(&CniCall::new("GC", "", "", config))
    }

    fn net_dir(&self) -> PathBuf {
        self.state.join(NET)
    }

    /// File names of the attachment records of [`NET`].
    fn records(&self) -> BTreeSet<String> {
        records_in(&self.net_dir())
    }

    fn rules(&self) -> BTreeSet<String> {
        gw_rules(&self.ns)
    }

    /// Routes in the policy's table, both families.
    fn table_routes(&self) -> Vec<Value> {
        let mut all = routes(&self.ns, Family::V4, TABLE);
        all.extend(routes(&self.ns, Family::V6, TABLE));
        all
    }

    /// No gwsteer rule, no record, nothing in the policy's table.
    fn assert_clean(&self, what: &str) {
        assert_eq!(self.rules(), BTreeSet::new(), "{what}: gwsteer rules left");
        assert_eq!(self.records(), BTreeSet::new(), "{what}: records left");
        assert_eq!(
            self.table_routes(),
            Vec::<Value>::new(),
            "{what}: table {TABLE}"
        );
    }
}

fn records_in(net_dir: &Path) -> BTreeSet<String> {
    match fs::read_dir(net_dir.join("attachments")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// The config with `prevResult` set.
fn with_prev(config: &Value, prev: &Value) -> Value {
    let mut c = config.clone();
    c["prevResult"] = prev.clone();
    c
}

/// What the reference bridge + host-local return for pod number `n`:
/// 10.244.1.n/24 and fd00:244:0:1::n/64 on the sandbox's eth0.
fn prev_result(version: &str, n: u8, sandbox: &str) -> Value {
    let mut ips = vec![
        json!({"address": format!("10.244.1.{n}/24"), "gateway": "10.244.1.1", "interface": 2}),
        json!({"address": format!("fd00:244:0:1::{n}/64"), "gateway": "fd00:244:0:1::1", "interface": 2}),
    ];
    if version < "1.0.0" {
        ips[0]["version"] = json!("4");
        ips[1]["version"] = json!("6");
    }
    json!({
        "cniVersion": version,
        "interfaces": [
            {"name": "cni0", "mac": "02:00:00:00:00:01"},
            {"name": format!("veth{n}"), "mac": format!("02:00:00:00:01:{n:02x}")},
            {"name": "eth0", "mac": format!("02:00:00:00:02:{n:02x}"), "sandbox": sandbox}
        ],
        "ips": ips,
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
        "dns": {}
    })
}

/// The four rules of steered pod number `n` (source mode, both families).
fn pod_rules(n: u8) -> BTreeSet<String> {
    [
        format!("inet 999: from 10.244.1.{n} to 10.244.0.0/16 lookup main"),
        format!("inet 1000: from 10.244.1.{n} lookup {TABLE}"),
        format!("inet6 999: from fd00:244:0:1::{n} to fd00:244::/48 lookup main"),
        format!("inet6 1000: from fd00:244:0:1::{n} lookup {TABLE}"),
    ]
    .into_iter()
    .collect()
}

fn union(sets: &[BTreeSet<String>]) -> BTreeSet<String> {
    sets.iter().flatten().cloned().collect()
}

fn record_name(cid: &str) -> String {
    format!("{cid}@eth0.json")
}

fn names(cids: &[&str]) -> BTreeSet<String> {
    cids.iter().map(|c| record_name(c)).collect()
}

// ---------------------------------------------------------------------------
// 1. DEL is forgiving.

#[test]
fn del_without_any_state_succeeds() {
    let node = Node::new("lcdelnone");
    let pod = node.pod("pod");
    let cfg = node.config("1.0.0");
    let prev = prev_result("1.0.0", 5, &pod);
    assert!(!node.state.exists());
    // Never ADDed: with netns and prevResult, without either, with a netns
    // path that does not exist.
    node.del("never", Some(&pod), &cfg, Some(&prev));
    node.del("never", None, &cfg, None);
    node.del(
        "never",
        Some("/run/netns/gw-no-such-netns"),
        &cfg,
        Some(&prev),
    );
    // An older spec version, where DEL carries no prevResult.
    node.del("never", Some(&pod), &node.config("0.3.1"), None);
    node.assert_clean("DEL with no state");
}

#[test]
fn del_after_the_netns_is_gone_without_netns_or_prev_result_and_twice() {
    let node = Node::new("lcdelgone");
    let cfg = node.config("1.0.0");
    let pod1_name = node.lab.netns("pod1");
    let pod1 = netns_path(&pod1_name);
    let pod2 = node.pod("pod2");
    let prev1 = prev_result("1.0.0", 5, &pod1);
    let prev2 = prev_result("1.0.0", 6, &pod2);
    node.add("c1", &pod1, &cfg, &prev1);
    node.add("c2", &pod2, &cfg, &prev2);
    assert_eq!(node.rules(), union(&[pod_rules(5), pod_rules(6)]));
    assert_eq!(node.records(), names(&["c1", "c2"]));
    assert_eq!(node.table_routes().len(), 2, "{:?}", node.table_routes());

    // The pod's namespace is gone before DEL (runtime restart, node crash).
    run("ip", ["netns", "del", &pod1_name]);
    assert!(!Path::new(&pod1).exists());
    node.del("c1", Some(&pod1), &cfg, Some(&prev1));
    assert_eq!(node.rules(), pod_rules(6), "only c1's rules go");
    assert_eq!(node.records(), names(&["c2"]));
    assert_eq!(node.table_routes().len(), 2, "c2 still needs table {TABLE}");

    // No CNI_NETNS and no prevResult: the record says what to remove.
    node.del("c2", None, &cfg, None);
    node.assert_clean("after DEL of both");

    // DEL twice.
    node.del("c2", None, &cfg, None);
    node.del("c1", Some(&pod1), &cfg, Some(&prev1));
    node.assert_clean("after repeated DELs");
}

#[test]
fn del_after_the_rules_were_removed_by_hand() {
    let node = Node::new("lcdelhand");
    let cfg = node.config("1.0.0");
    let pod = node.pod("pod");
    let prev = prev_result("1.0.0", 7, &pod);
    node.add("c1", &pod, &cfg, &prev);
    assert_eq!(node.rules(), pod_rules(7));
    let table = TABLE.to_string();
    for (flag, src, dst) in [
        ("-4", "10.244.1.7", "10.244.0.0/16"),
        ("-6", "fd00:244:0:1::7", "fd00:244::/48"),
    ] {
        ip(
            &node.ns,
            [
                flag, "rule", "del", "priority", "999", "from", src, "to", dst,
            ],
        );
        ip(
            &node.ns,
            [
                flag, "rule", "del", "priority", "1000", "from", src, "table", &table,
            ],
        );
    }
    // And one of the table routes too.
    ip(&node.ns, ["-4", "route", "del", "default", "table", &table]);
    assert!(node.rules().is_empty());
    node.del("c1", Some(&pod), &cfg, Some(&prev));
    node.assert_clean("DEL after ip rule del");
}

#[test]
fn del_with_a_config_that_no_longer_validates_removes_by_record() {
    let node = Node::new("lcdelbad");
    let cfg = node.config("1.0.0");
    let pod = node.pod("pod");
    let prev = prev_result("1.0.0", 8, &pod);
    node.add("c1", &pod, &cfg, &prev);
    assert_eq!(node.rules(), pod_rules(8));

    let mut bad = cfg.clone();
    bad["steering"][0]["gateways"][1]["via"] = json!("10.0.0.300");
    // The config really is refused...
    let call = CniCall::new("ADD", "c2", "eth0", with_prev(&bad, &prev)).netns(&pod);
    let out = node.gw(&call);
    assert_eq!(out.expect_error("ADD with a bad gateway"), 7, "{out}");
    assert_eq!(
        out.error_msg(),
        Some("steering[0].gateways[1].via: \"10.0.0.300\" is not an IP address")
    );
    // ...yet DEL with it removes c1 by its record, and says so in the logFile.
    node.del("c1", Some(&pod), &bad, Some(&prev));
    node.assert_clean("DEL with an invalid config");
    let log = fs::read_to_string(&node.log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("DEL c1/eth0") && l.contains("removed")),
        "no DEL line in the log:\n{log}"
    );
}

// ---------------------------------------------------------------------------
// 2. CHECK.

#[test]
fn check_names_exactly_the_missing_or_drifted_object() {
    let node = Node::new("lccheck");
    let pod = node.pod("pod");
    let cfg = node.config("1.0.0");
    // The real primary plugin provides the prevResult.
    let primary = bridge_conflist(
        NET,
        "1.0.0",
        "cni0",
        &["10.244.1.0/24", "fd00:244:0:1::/64"],
        &node.lab.subdir("ipam"),
        Value::Null,
    );
    let args = k8s_cni_args("default", "web-0", "c1");
    let bridge_result = conflist_add(&node.ns, &primary, "c1", &pod, "eth0", Some(&args))
        .unwrap_or_else(|o| panic!("bridge ADD: {o}"));
    let result = node.add("c1", &pod, &cfg, &bridge_result);
    let pod4 = crate::support::examples::pod_ips(&result)
        .into_iter()
        .find(|a| !a.contains(':'))
        .unwrap();

    // CHECK gets the cached ADD result as prevResult, as libcni does.
    node.check("c1", &pod, &cfg, &result)
        .expect_ok("CHECK right after ADD");

    ip(
        &node.ns,
        [
            "rule", "del", "priority", "1000", "from", &pod4, "table", "100",
        ],
    );
    let out = node.check("c1", &pod, &cfg, &result);
    assert_eq!(out.expect_error("CHECK without the rule"), 101, "{out}");
    let msg = out.error_msg().unwrap();
    assert!(
        msg.starts_with("1 problem(s): ")
            && msg.contains(&format!("missing inet rule 1000: from {pod4} lookup 100")),
        "{msg}"
    );

    // A re-ADD repairs it.
    node.add("c1", &pod, &cfg, &bridge_result);
    node.check("c1", &pod, &cfg, &result)
        .expect_ok("CHECK after re-ADD");

    ip(
        &node.ns,
        [
            "route", "replace", "default", "via", OTHER_GW4, "table", "100",
        ],
    );
    let out = node.check("c1", &pod, &cfg, &result);
    assert_eq!(out.expect_error("CHECK with a drifted route"), 101, "{out}");
    let msg = out.error_msg().unwrap();
    assert!(
        msg.starts_with("1 problem(s): ")
            && msg.contains(&format!("drifted inet route default table 100 via {GW4}"))
            && msg.contains(OTHER_GW4),
        "{msg}"
    );
    node.add("c1", &pod, &cfg, &bridge_result);
    node.check("c1", &pod, &cfg, &result)
        .expect_ok("CHECK after the route was repaired");

    // CHECK needs CNI 0.4.0 or later.
    let old = prev_result("0.3.1", 2, &pod);
    let out = node.check("c1", &pod, &node.config("0.3.1"), &old);
    assert_eq!(out.expect_error("CHECK at 0.3.1"), 1, "{out}");

    node.del("c1", Some(&pod), &cfg, Some(&result));
    conflist_del(
        &node.ns,
        &primary,
        "c1",
        Some(&pod),
        "eth0",
        Some(&args),
        None,
    )
    .unwrap_or_else(|o| panic!("bridge DEL: {o}"));
    node.assert_clean("after DEL");

    // No record: CHECK fails (a plugin error, code >= 100).
    let out = node.check("c1", &pod, &cfg, &result);
    assert_eq!(out.expect_error("CHECK without a record"), 101, "{out}");
    assert!(
        out.error_msg().unwrap().contains("no gwsteer record"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// 3. GC.

#[test]
fn gc_removes_exactly_the_attachments_not_listed() {
    let node = Node::new("lcgc");
    let cfg = node.config("1.1.0");
    let pods: Vec<String> = (1..=3).map(|i| node.pod(&format!("pod{i}"))).collect();
    let cids = ["c11", "c12", "c13"];
    for (i, cid) in cids.iter().enumerate() {
        let n = 11 + i as u8;
        node.add(cid, &pods[i], &cfg, &prev_result("1.1.0", n, &pods[i]));
    }
    // Another network in the same state dir, with its own table: GC of
    // lc-net must not touch it.
    let mut other = cfg.clone();
    other["name"] = json!("lc-other");
    other["steering"][0]["name"] = json!("oth");
    other["steering"][0]["table"] = json!(200);
    other["steering"][0]["priority"] = json!(2000);
    let other_pod = node.pod("pod4");
    node.add(
        "c14",
        &other_pod,
        &other,
        &prev_result("1.1.0", 14, &other_pod),
    );
    let other_rules: BTreeSet<String> = [
        "inet 1999: from 10.244.1.14 to 10.244.0.0/16 lookup main",
        "inet 2000: from 10.244.1.14 lookup 200",
        "inet6 1999: from fd00:244:0:1::14 to fd00:244::/48 lookup main",
        "inet6 2000: from fd00:244:0:1::14 lookup 200",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let all = union(&[
        pod_rules(11),
        pod_rules(12),
        pod_rules(13),
        other_rules.clone(),
    ]);
    assert_eq!(node.rules(), all);
    let state = || (node.rules(), node.records(), node.table_routes());
    let before = state();

    // Without cni.dev/valid-attachments GC refuses and removes nothing.
    let out = node.gc(cfg.clone());
    assert_eq!(out.expect_error("GC without valid-attachments"), 7, "{out}");
    assert!(
        out.error_msg()
            .unwrap()
            .contains("cni.dev/valid-attachments"),
        "{out}"
    );
    assert_eq!(state(), before);
    // GC needs CNI 1.1.0.
    let mut old = node.config("1.0.0");
    old["cni.dev/valid-attachments"] = json!([]);
    let out = node.gc(old);
    assert_eq!(out.expect_error("GC at 1.0.0"), 1, "{out}");
    assert_eq!(state(), before);

    let mut keep_one = cfg.clone();
    keep_one["cni.dev/valid-attachments"] = json!([
        {"containerID": "c12", "ifname": "eth0"},
        // Same container, other interface: not c11's attachment.
        {"containerID": "c11", "ifname": "net1"}
    ]);
    node.gc(keep_one).expect_ok("GC keeping c12");
    assert_eq!(node.rules(), union(&[pod_rules(12), other_rules.clone()]));
    assert_eq!(node.records(), names(&["c12"]));
    assert_eq!(node.table_routes(), before.2, "c12 still needs the table");
    node.check("c12", &pods[1], &cfg, &prev_result("1.1.0", 12, &pods[1]))
        .expect_ok("CHECK of the kept attachment");

    let mut none = cfg.clone();
    none["cni.dev/valid-attachments"] = json!([]);
    node.gc(none).expect_ok("GC with an empty list");
    assert_eq!(node.rules(), other_rules, "only lc-other's rules remain");
    assert_eq!(node.records(), BTreeSet::new());
    assert_eq!(
        node.table_routes(),
        Vec::<Value>::new(),
        "table {TABLE} emptied"
    );
    assert_eq!(records_in(&node.state.join("lc-other")), names(&["c14"]));
    assert_eq!(routes(&node.ns, Family::V4, 200).len(), 1);

    node.del("c14", None, &other, None);
    node.assert_clean("after DEL of lc-other's attachment");
    assert!(routes(&node.ns, Family::V4, 200).is_empty());
}

// ---------------------------------------------------------------------------
// 4. STATUS and 5. VERSION.

#[test]
fn status_says_whether_the_state_dir_is_usable() {
    let node = Node::new("lcstatus");
    node.gw(&CniCall::new("STATUS", "", "", node.config("1.1.0")))
        .expect_ok("STATUS");
    assert!(node.net_dir().join("lock").exists());

    let file = node.lab.tmpdir().join("a-file");
    fs::write(&file, "not a directory").unwrap();
    let mut cfg = node.config("1.1.0");
    cfg["stateDir"] = json!(file.join("sub"));
    let out = node.gw(&CniCall::new("STATUS", "", "", cfg));
    assert_eq!(
        out.expect_error("STATUS with stateDir under a file"),
        50,
        "{out}"
    );
    assert!(
        out.error_msg()
            .unwrap()
            .contains(&file.join("sub").display().to_string()),
        "{out}"
    );

    let out = node.gw(&CniCall::new("STATUS", "", "", node.config("1.0.0")));
    assert_eq!(out.expect_error("STATUS at 1.0.0"), 1, "{out}");
}

/// STATUS run as a runtime would, but in a mount namespace whose sbin
/// directories are empty and with a `PATH` of `/usr/bin:/bin`: no `nft`
/// anywhere gwsteer looks.
fn status_without_nft(node: &Node, config: &Value) -> CniOutcome {
    use std::os::fd::AsRawFd;
    let netns = fs::File::open(format!("/run/netns/{}", node.ns)).unwrap();
    let fd = netns.as_raw_fd();
    let mut cmd = Command::new(gwsteer_bin());
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("CNI_COMMAND", "STATUS")
        .env("CNI_PATH", "/opt/cni/bin");
    // SAFETY: only raw syscalls between fork and exec; `netns` outlives the spawn.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 || libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail();
            }
            let none = std::ptr::null();
            if libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return fail();
            }
            for dir in [c"/usr/sbin", c"/usr/local/sbin"] {
                let tmpfs = c"tmpfs".as_ptr();
                if libc::mount(tmpfs, dir.as_ptr(), tmpfs, 0, std::ptr::null()) != 0 {
                    return fail();
                }
            }
            Ok(())
        });
    }
    let out = run_captured(
        cmd,
        serde_json::to_vec(config).unwrap(),
        Duration::from_secs(60),
    );
    drop(netns);
    out
}

/// The `nft` command is a dependency of `vrf.masquerade` and of router pods'
/// masquerade whatever `firewallBackend` says: STATUS fails with 50 naming
/// the key when it is missing, and only for configs that need it. The
/// nftables backend (`mark`/`connmark` policies, the exemption) talks
/// nf_tables netlink only: no `nft` needed.
#[test]
fn status_says_when_the_nft_command_a_config_needs_is_missing() {
    let node = Node::new("lcnft");
    let mut router = node.config("1.1.0");
    router["firewallBackend"] = json!("none");
    router["gatewayNetwork"] = json!({"bridge": "lcnftbr", "role": "router"});
    node.gw(&CniCall::new("STATUS", "", "", router.clone()))
        .expect_ok("STATUS of a router network with nft installed");

    let out = status_without_nft(&node, &router);
    assert_eq!(out.expect_error("STATUS without nft"), 50, "{out}");
    let msg = out.error_msg().unwrap();
    assert!(
        msg.contains("gatewayNetwork.masquerade") && msg.contains("nft command is not installed"),
        "{out}"
    );

    // Nothing runs nft for these: STATUS stays OK without it.
    let mut quiet = router.clone();
    quiet["gatewayNetwork"]["masquerade"] = json!(false);
    let mut client = router.clone();
    client["gatewayNetwork"] =
        json!({"bridge": "lcnftbr", "role": "client", "router": "172.31.0.1"});
    let mut connmark = node.config("1.1.0");
    connmark["firewallBackend"] = json!("nftables");
    connmark["masqueradeExemption"] = json!(true);
    connmark["steering"] = json!([crate::support::fwsteer::connmark_policy(
        "lb",
        160,
        "0x10",
        "eth-a",
        "192.168.1.1",
        "fd00:1::1"
    )]);
    for (what, cfg) in [
        ("router without masquerade", quiet),
        ("client network", client),
        ("connmark policy and exemption (nftables backend)", connmark),
    ] {
        status_without_nft(&node, &cfg).expect_ok(what);
    }
    assert!(
        !link_names(&node.ns).iter().any(|l| l == "lcnftbr"),
        "STATUS made the gateway bridge"
    );
}

#[test]
fn version_lists_exactly_the_supported_versions() {
    let node = Node::new("lcversion");
    for v in VERSIONS {
        let out = node.gw(&CniCall::new("VERSION", "", "", json!({"cniVersion": v})));
        let reply = out.expect_ok("VERSION");
        assert_eq!(
            reply,
            json!({"cniVersion": v, "supportedVersions": VERSIONS}),
            "{out}"
        );
    }
    // libcni sends only {"cniVersion": …}; an empty stdin still answers.
    let call = CniCall::new("VERSION", "", "", Value::Null);
    let out = invoke_raw(&node.ns, &gwsteer_bin(), &call, b"");
    assert_disciplined(&call, &out);
    assert_eq!(
        out.expect_ok("VERSION with empty stdin")["supportedVersions"],
        json!(VERSIONS)
    );
}

// ---------------------------------------------------------------------------
// 6. The state store from outside.

fn walk(dir: &Path, out: &mut Vec<(PathBuf, bool, u32)>) {
    let meta = fs::metadata(dir).unwrap();
    out.push((dir.to_path_buf(), true, meta.permissions().mode() & 0o7777));
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            walk(&path, out);
        } else {
            out.push((path, false, meta.permissions().mode() & 0o7777));
        }
    }
}

#[test]
fn state_directories_are_0700_and_files_0600() {
    let node = Node::new("lcmodes");
    let cfg = node.config("1.0.0");
    let pod = node.pod("pod");
    node.add("c1", &pod, &cfg, &prev_result("1.0.0", 9, &pod));
    let mut entries = Vec::new();
    walk(&node.state, &mut entries);
    let net = node.net_dir();
    // The only links are entries with one holder (a link's mode means
    // nothing on Linux): the network's `holds/owner.<hash>`, naming the
    // attachment, and the node scope's claims of the policy's table and
    // priority, naming the network's policy group.
    let (mut owners, mut claims) = (0, 0);
    let node_holds = node.state.join(".node/holds");
    for (path, is_dir, mode) in &entries {
        if fs::symlink_metadata(path).unwrap().is_symlink() {
            let name = path.file_name().unwrap().to_string_lossy();
            let target = fs::read_link(path).unwrap();
            if path.parent() == Some(&net.join("holds")) && name.starts_with("owner.") {
                assert_eq!(target, Path::new("c1@eth0"));
                owners += 1;
            } else if path.parent() == Some(node_holds.as_path()) && name.starts_with("claim.") {
                let network = net.file_name().unwrap().to_string_lossy();
                assert_eq!(target, Path::new(&format!("{network}@steering.oam")));
                claims += 1;
            } else {
                panic!("{} is a symbolic link", path.display());
            }
            continue;
        }
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} has mode {mode:o}", path.display());
    }
    // One per pod address (the config's pod is dual-stack); the table and
    // the priorities of the policy's rules.
    assert_eq!(owners, 2, "{entries:?}");
    assert!(claims >= 2, "{entries:?}");
    for expected in [
        net.join("lock"),
        net.join("attachments/c1@eth0.json"),
        net.join("nodes/steering.oam.json"),
        net.join("holds/steering.oam/c1@eth0"),
    ] {
        assert!(
            entries.iter().any(|(p, _, _)| *p == expected),
            "{} missing from {entries:?}",
            expected.display()
        );
    }
    let record: Value =
        serde_json::from_slice(&fs::read(net.join("attachments/c1@eth0.json")).unwrap()).unwrap();
    assert_eq!(record["schema"], 2, "{record}");
    node.del("c1", Some(&pod), &cfg, None);
    node.assert_clean("after DEL");
}

/// Files in `<net>/corrupt/` whose name starts with `stem`.
fn set_aside(net: &Path, stem: &str) -> Vec<PathBuf> {
    match fs::read_dir(net.join("corrupt")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(stem))
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_corrupt_record_is_reported_set_aside_and_does_not_block() {
    let node = Node::new("lccorrupt");
    let cfg = node.config("1.0.0");
    let pod = node.pod("pod");
    let net = node.net_dir();
    let garbage = b"{\"schema\": 1, \"netw\x00rk garbage";

    // DEL over a corrupt record: code 102 naming the file, set aside; a retry succeeds.
    let prev1 = prev_result("1.0.0", 21, &pod);
    node.add("c1", &pod, &cfg, &prev1);
    let file = net.join("attachments/c1@eth0.json");
    fs::write(&file, garbage).unwrap();
    let call = CniCall::new("DEL", "c1", "eth0", with_prev(&cfg, &prev1)).netns(&pod);
    let out = node.gw(&call);
    assert_eq!(out.expect_error("DEL over a corrupt record"), 102, "{out}");
    let msg = out.error_msg().unwrap();
    assert!(
        msg.contains(&file.display().to_string()) && msg.contains("set aside"),
        "{msg}"
    );
    assert!(!file.exists(), "the corrupt record stays in attachments/");
    let aside = set_aside(&net, "c1@eth0.json.");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(msg.contains(&aside[0].display().to_string()), "{msg}");
    assert_eq!(fs::read(&aside[0]).unwrap(), garbage, "kept as it was");
    // What the record said is lost, but config and prevResult still say what
    // c1 made: a rule left for 10.244.1.21 would steer the next pod that gets
    // the address.
    node.assert_clean("after DEL over a corrupt record");
    node.del("c1", Some(&pod), &cfg, Some(&prev1));
    assert!(!node.records().contains(&record_name("c1")));

    // ADD over a corrupt record succeeds and writes a good one.
    let prev2 = prev_result("1.0.0", 22, &pod);
    node.add("c2", &pod, &cfg, &prev2);
    let file = net.join("attachments/c2@eth0.json");
    fs::write(&file, garbage).unwrap();
    node.add("c2", &pod, &cfg, &prev2);
    let record: Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    assert_eq!(record["containerId"], "c2", "{record}");
    assert_eq!(set_aside(&net, "c2@eth0.json.").len(), 1);
    node.check("c2", &pod, &cfg, &prev2)
        .expect_ok("CHECK after ADD over a corrupt record");
    assert!(pod_rules(22).is_subset(&node.rules()));
    node.del("c2", Some(&pod), &cfg, Some(&prev2));
    assert!(node.rules().is_disjoint(&pod_rules(22)));
    assert!(node.records().is_empty());
}

/// `flock <file> sleep 30` in its own process group; killed (the whole
/// group: flock and its sleep) on drop.
struct LockHolder(Child);

impl LockHolder {
    fn start(file: &Path) -> LockHolder {
        let child = Command::new("flock")
            .arg(file)
            .args(["sleep", "30"])
            .process_group(0)
            .spawn()
            .expect("run flock (util-linux)");
        let holder = LockHolder(child);
        wait_for("flock to hold the lock", Duration::from_secs(5), || {
            Command::new("flock")
                .args(["-n", "-E", "75"])
                .arg(file)
                .arg("true")
                .status()
                .is_ok_and(|s| s.code() == Some(75))
        });
        holder
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

#[test]
fn a_held_lock_makes_add_try_again_later() {
    let node = Node::new("lclock");
    let mut cfg = node.config("1.0.0");
    cfg["lockTimeoutMs"] = json!(400);
    let pod = node.pod("pod");
    node.add("c0", &pod, &cfg, &prev_result("1.0.0", 30, &pod));

    let holder = LockHolder::start(&node.net_dir().join("lock"));
    let prev = prev_result("1.0.0", 31, &pod);
    let call = CniCall::new("ADD", "c1", "eth0", with_prev(&cfg, &prev)).netns(&pod);
    let started = Instant::now();
    let out = node.gw(&call);
    let took = started.elapsed();
    assert_eq!(out.expect_error("ADD while the lock is held"), 11, "{out}");
    assert!(out.error_msg().unwrap().contains("locked"), "{out}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "gave up after {took:?}"
    );
    assert_eq!(node.records(), names(&["c0"]));
    assert_eq!(node.rules(), pod_rules(30));

    drop(holder);
    node.add("c1", &pod, &cfg, &prev);
    assert_eq!(node.rules(), union(&[pod_rules(30), pod_rules(31)]));
    node.del("c1", Some(&pod), &cfg, None);
    node.del("c0", Some(&pod), &cfg, None);
    node.assert_clean("after DEL");
}

// ---------------------------------------------------------------------------
// 7. Logs go to logFile (or stderr), never stdout.

#[test]
fn logs_go_to_the_log_file_and_never_to_stdout() {
    let node = Node::new("lclog");
    let cfg = node.config("1.0.0");
    let pod = node.pod("pod");
    let cid = "3f2a9c0d81b74e56a0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3";
    let prev = prev_result("1.0.0", 40, &pod);
    for (command, config) in [
        ("ADD", with_prev(&cfg, &prev)),
        ("DEL", with_prev(&cfg, &prev)),
    ] {
        let call = CniCall::new(command, cid, "eth0", config)
            .netns(&pod)
            .cni_args(&k8s_cni_args("default", "web-0", cid));
        let out = node.gw(&call);
        out.expect_ok(command);
        assert_eq!(out.stderr, "", "{command}: logs must go to logFile");
    }
    let log = fs::read_to_string(&node.log).unwrap();
    // The full container id is logged, so a grep for it finds the story.
    for command in ["ADD", "DEL"] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("{command} {cid}/eth0"))),
            "no {command} line for {cid} in the log:\n{log}"
        );
    }
    assert!(log.contains("web-0"), "the pod's name is logged:\n{log}");
    node.assert_clean("after DEL");
}
