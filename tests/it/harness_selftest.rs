//! Proves the test harness itself (tests/it/support) against the real kernel and
//! the reference plugins, without gwsteer: namespaces come and go, traffic
//! flows only where it should, and bridge + host-local conflists run through
//! both the Rust conflist runner and Debian's libcni.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(2);

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn netns_exists(name: &str) -> bool {
    Path::new(&netns_path(name)).exists()
}

#[test]
fn lab_creates_configures_and_removes_namespaces() {
    let (plain, router, tmp) = {
        let lab = Lab::new("selflab");
        let plain = lab.netns("plain");
        let router = lab.router("rtr");
        assert!(plain.starts_with(lab.prefix()) && netns_exists(&plain));
        assert_eq!(lab.read_sysctl(&plain, "net.ipv4.ip_forward"), "0");
        assert_eq!(lab.read_sysctl(&plain, "net.ipv6.conf.all.forwarding"), "0");
        assert_eq!(lab.read_sysctl(&router, "net.ipv4.ip_forward"), "1");
        assert_eq!(
            lab.read_sysctl(&router, "net.ipv6.conf.all.forwarding"),
            "1"
        );
        for ns in [&plain, &router] {
            assert_eq!(lab.read_sysctl(ns, "net.ipv6.conf.default.accept_dad"), "0");
            assert_eq!(lab.read_sysctl(ns, "net.ipv6.conf.all.accept_dad"), "0");
            let lo = ip_json(ns, &["link", "show", "dev", "lo"]);
            assert!(
                lo[0]["flags"].as_array().unwrap().contains(&json!("UP")),
                "lo down in {ns}: {lo}"
            );
        }
        // A process left running inside a namespace must not keep it alive.
        let mut sleeper = std::process::Command::new("ip")
            .args(["netns", "exec", &plain, "sleep", "600"])
            .spawn()
            .unwrap();
        wait_for("sleep inside the netns", T, || {
            !run("ip", ["netns", "pids", &plain]).trim().is_empty()
        });
        let tmp = lab.tmpdir().to_path_buf();
        std::fs::write(lab.subdir("state").join("x"), "x").unwrap();
        drop(lab);
        let _ = sleeper.wait();
        (plain, router, tmp)
    };
    assert!(!netns_exists(&plain), "{plain} left behind");
    assert!(!netns_exists(&router), "{router} left behind");
    assert!(!tmp.exists(), "{} left behind", tmp.display());
}

#[test]
fn lab_cleans_up_on_panic_and_after_crashed_runs() {
    let made = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let made2 = made.clone();
    let caught = std::panic::catch_unwind(move || {
        let lab = Lab::new("selfpanic");
        *made2.lock().unwrap() = lab.netns("doomed");
        panic!("test failure");
    });
    assert!(caught.is_err());
    let doomed = made.lock().unwrap().clone();
    assert!(
        !doomed.is_empty() && !netns_exists(&doomed),
        "{doomed} survived a panic"
    );

    // A namespace of this tag from a run whose process is gone (pid 1 is never
    // this test binary) is removed by the next Lab::new with the same tag.
    let stale = "gwselfstale-1-0-old";
    run("ip", ["netns", "add", stale]);
    let _lab = Lab::new("selfstale");
    assert!(!netns_exists(stale), "stale {stale} not removed");
}

/// A namespace whose pid is a live test binary of another suite (cargo's
/// `…/deps/<test>-<hash>`, whatever the test binary is called: a checkout
/// whose tests are still split into several crates) is left alone by
/// `Lab::new`; once that process is gone, it is stale.
#[test]
fn lab_keeps_the_namespaces_of_a_live_suite_from_another_checkout() {
    let deps = std::env::temp_dir().join(format!(
        "gwsteer-selftest-{}/target/debug/deps",
        std::process::id()
    ));
    std::fs::create_dir_all(&deps).unwrap();
    let other_suite = deps.join("lifecycle-0123456789abcdef");
    // A hard link leaves no open writable file that a fork elsewhere in this
    // process could hold (ETXTBSY); a copy when /tmp is another filesystem.
    if std::fs::hard_link("/bin/sleep", &other_suite).is_err() {
        std::fs::copy("/bin/sleep", &other_suite).unwrap();
    }
    let mut other = None;
    for _ in 0..50 {
        match std::process::Command::new(&other_suite).arg("600").spawn() {
            Ok(child) => {
                other = Some(child);
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("run {}: {e}", other_suite.display()),
        }
    }
    let mut other = other.expect("the other suite's binary stays busy");
    let live = format!("gwselflive-{}-0-node", other.id());
    run("ip", ["netns", "add", &live]);
    drop(Lab::new("selflive"));
    let kept = netns_exists(&live);
    let _ = other.kill();
    let _ = other.wait();
    drop(Lab::new("selflive"));
    let removed = !netns_exists(&live);
    let _ = try_run("ip", ["netns", "del", &live]);
    let _ = std::fs::remove_dir_all(deps.ancestors().nth(3).unwrap());
    assert!(kept, "{live} of a live test binary was taken for stale");
    assert!(removed, "{live} outlived its process");
}

#[test]
fn tcp_and_ping_between_two_namespaces_v4_v6() {
    let lab = Lab::new("selftcp");
    let client = lab.netns("cli");
    let server = lab.netns("srv");
    lab.veth(&client, "c0", &server, "s0");
    lab.addr(&client, "c0", "10.99.0.1/24");
    lab.addr(&server, "s0", "10.99.0.2/24");
    lab.addr(&client, "c0", "fd00:99::1/64");
    lab.addr(&server, "s0", "fd00:99::2/64");
    assert_eq!(
        sorted(addrs(&server, "s0")),
        sorted(vec![
            "10.99.0.2/24".parse().unwrap(),
            "fd00:99::2/64".parse().unwrap()
        ])
    );

    let srv4 = TcpServer::start(&server, sock("10.99.0.2:7001"));
    let srv6 = TcpServer::start(&server, sock("[fd00:99::2]:7001"));

    let pong = tcp_pong(&client, srv4.addr(), T).unwrap();
    assert_eq!(pong.local, sock("10.99.0.2:7001"));
    assert_eq!(pong.peer, "10.99.0.1".parse::<IpAddr>().unwrap());
    let pong = tcp_pong(&client, srv6.addr(), T).unwrap();
    assert_eq!(pong.local, sock("[fd00:99::2]:7001"));
    assert_eq!(pong.peer, "fd00:99::1".parse::<IpAddr>().unwrap());
    assert_eq!(srv4.peers().len(), 1);
    assert_eq!(srv6.peers().len(), 1);

    // Nothing listens there: refused, not a hang.
    let err = tcp_request(&client, sock("10.99.0.2:7002"), T).unwrap_err();
    assert!(err.contains("refused"), "{err}");
    // The root namespace has no such address: the request must not leave the lab.
    let err = tcp_request(&client, sock("10.98.0.2:7001"), T).unwrap_err();
    assert!(
        err.contains("unreachable") || err.contains("timed out"),
        "{err}"
    );

    assert!(ping(&client, "10.99.0.2", None, false));
    assert!(ping(&client, "fd00:99::2", None, false));
    assert!(!ping(&client, "10.99.0.77", None, false));
    // Don't-fragment probes: veth MTU 1500 = 1472 + 28 (IPv4) = 1452 + 48 (IPv6).
    assert!(ping(&client, "10.99.0.2", Some(1472), true));
    assert!(!ping(&client, "10.99.0.2", Some(1473), true));
    assert!(ping(&client, "fd00:99::2", Some(1452), true));
    assert!(!ping(&client, "fd00:99::2", Some(1453), true));
    // Without DF the large one is fragmented and arrives.
    assert!(ping(&client, "10.99.0.2", Some(3000), false));

    // in_netns really runs in the namespace. (/proc/net is the *process's*
    // namespace; a thread's own is /proc/thread-self/net.)
    let srv_links = in_netns(&server, || {
        std::fs::read_to_string("/proc/thread-self/net/dev").unwrap()
    });
    assert!(
        srv_links.contains("s0:") && !srv_links.contains("c0:"),
        "{srv_links}"
    );
    let fwd = in_netns(&lab.router("rtr"), || {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()
    });
    assert_eq!(fwd.trim(), "1", "/proc/sys/net follows the thread's netns");
}

#[test]
fn forwarding_only_where_asked() {
    let lab = Lab::new("selffwd");
    let client = lab.netns("cli");
    let mid = lab.netns("mid");
    let server = lab.netns("srv");
    lab.veth(&client, "c0", &mid, "m0");
    lab.veth(&mid, "m1", &server, "s0");
    for (ns, dev, cidr) in [
        (&client, "c0", "10.1.0.2/24"),
        (&mid, "m0", "10.1.0.1/24"),
        (&mid, "m1", "10.2.0.1/24"),
        (&server, "s0", "10.2.0.2/24"),
        (&client, "c0", "fd00:1::2/64"),
        (&mid, "m0", "fd00:1::1/64"),
        (&mid, "m1", "fd00:2::1/64"),
        (&server, "s0", "fd00:2::2/64"),
    ] {
        lab.addr(ns, dev, cidr);
    }
    lab.route(&client, &["add", "default", "via", "10.1.0.1"]);
    lab.route(&client, &["add", "default", "via", "fd00:1::1"]);
    lab.route(
        &server,
        &["add", "default", "via", "10.2.0.2", "dev", "s0"][..0],
    );
    lab.route(&server, &["add", "default", "via", "10.2.0.1"]);
    lab.route(&server, &["add", "default", "via", "fd00:2::1"]);
    let v4 = routes(&client, Family::V4, "main");
    assert!(
        v4.iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "10.1.0.1"),
        "{v4:?}"
    );
    assert!(routes(&client, Family::V4, 100).is_empty());

    let srv4 = TcpServer::start(&server, sock("10.2.0.2:7001"));
    let srv6 = TcpServer::start(&server, sock("[fd00:2::2]:7001"));
    let short = Duration::from_millis(800);
    assert!(tcp_request(&client, srv4.addr(), short).is_err());
    assert!(tcp_request(&client, srv6.addr(), short).is_err());

    lab.sysctls(
        &mid,
        &[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ],
    );
    assert_eq!(
        tcp_pong(&client, srv4.addr(), T).unwrap().peer,
        "10.1.0.2".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        tcp_pong(&client, srv6.addr(), T).unwrap().peer,
        "fd00:1::2".parse::<IpAddr>().unwrap()
    );
}

/// The IPs of a CNI result (any version from 0.3.0 on).
fn result_ips(result: &Value) -> Vec<ipnet::IpNet> {
    result["ips"]
        .as_array()
        .unwrap_or_else(|| panic!("no ips in {result}"))
        .iter()
        .map(|i| i["address"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn sorted(mut v: Vec<ipnet::IpNet>) -> Vec<ipnet::IpNet> {
    v.sort();
    v
}

/// Reservations host-local holds for `network` in `data_dir` (files named by IP).
fn reservations(data_dir: &Path, network: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join(network)) else {
        return vec![];
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<IpAddr>().is_ok())
        .collect()
}

/// The pod has what the result says, and the node reaches it over v4 and v6.
fn assert_pod_attached(node: &str, pod: &str, result: &Value) {
    let ips = result_ips(result);
    assert_eq!(ips.len(), 2, "{result}");
    assert_eq!(sorted(addrs(pod, "eth0")), sorted(ips.clone()));
    let defaults = routes(pod, Family::V4, "main");
    assert!(
        defaults
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "10.244.1.1"),
        "{defaults:?}"
    );
    let defaults6 = routes(pod, Family::V6, "main");
    assert!(
        defaults6
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "fd00:244:1::1"),
        "{defaults6:?}"
    );
    for ip in &ips {
        let srv = TcpServer::start(pod, SocketAddr::new(ip.addr(), 8080));
        let pong = tcp_pong(node, srv.addr(), T).unwrap();
        let gw: IpAddr = if ip.addr().is_ipv4() {
            "10.244.1.1".parse().unwrap()
        } else {
            "fd00:244:1::1".parse().unwrap()
        };
        assert_eq!(pong.peer, gw, "node reaches pod from its bridge address");
        assert!(ping(node, ip.addr(), None, false));
    }
}

fn assert_pod_detached(pod: &str, data_dir: &Path, network: &str) {
    assert!(
        try_ip(pod, ["link", "show", "dev", "eth0"]).is_err(),
        "eth0 still in {pod}"
    );
    assert_eq!(reservations(data_dir, network), Vec::<String>::new());
}

/// For `version`, tag `<version without dots>`: namespaces `node<tag>` and
/// `pod<tag>`, host-local's data dir `ipam<tag>` and the `selftest` bridge
/// conflist (10.244.1.0/24, fd00:244:1::/64) without gwsteer.
fn bridge_setup(lab: &Lab, version: &str) -> (String, String, String, PathBuf, Value) {
    let tag = version.replace('.', "");
    let node = lab.netns(&format!("node{tag}"));
    let pod = lab.netns(&format!("pod{tag}"));
    let data_dir = lab.subdir(&format!("ipam{tag}"));
    let conf = bridge_conflist(
        "selftest",
        version,
        "cni0",
        &["10.244.1.0/24", "fd00:244:1::/64"],
        &data_dir,
        Value::Null,
    );
    (tag, node, pod, data_dir, conf)
}

#[test]
fn bridge_conflist_through_rust_runner() {
    let lab = Lab::new("selfrun");
    let k8s_args = k8s_cni_args("default", "web-0", "ctr1");
    for version in ["1.0.0", "1.1.0"] {
        let (_, node, pod, data_dir, conf) = bridge_setup(&lab, version);
        let pod_path = netns_path(&pod);
        let result = conflist_add(&node, &conf, "ctr1", &pod_path, "eth0", Some(&k8s_args))
            .unwrap_or_else(|o| panic!("ADD {version}: {o}"));
        assert_eq!(result["cniVersion"], version);
        assert_pod_attached(&node, &pod, &result);
        assert_eq!(reservations(&data_dir, "selftest").len(), 2);
        let bridge = ip_json(&node, &["addr", "show", "dev", "cni0"]);
        assert_eq!(bridge[0]["ifname"], "cni0", "{bridge}");

        conflist_check(
            &node,
            &conf,
            "ctr1",
            &pod_path,
            "eth0",
            Some(&k8s_args),
            &result,
        )
        .unwrap_or_else(|o| panic!("CHECK {version}: {o}"));
        // Shimmed reference plugins do not speak GC/STATUS: nothing to run, no error.
        conflist_status(&node, &conf).unwrap_or_else(|o| panic!("STATUS: {o}"));

        conflist_del(
            &node,
            &conf,
            "ctr1",
            Some(&pod_path),
            "eth0",
            Some(&k8s_args),
            Some(&result),
        )
        .unwrap_or_else(|o| panic!("DEL {version}: {o}"));
        assert_pod_detached(&pod, &data_dir, "selftest");
        // DEL is idempotent, also without a netns.
        conflist_del(&node, &conf, "ctr1", None, "eth0", None, Some(&result))
            .unwrap_or_else(|o| panic!("second DEL {version}: {o}"));
    }
}

#[test]
fn direct_invoke_reports_cni_errors() {
    let lab = Lab::new("selfinv");
    let node = lab.netns("node");
    let conf = json!({"cniVersion": "1.1.0", "name": "x", "type": "bridge"});
    let call = CniCall::new("ADD", "ctr1", "eth0", conf).netns("/run/netns/none");
    let out = invoke(&node, Path::new("/usr/lib/cni/bridge"), &call);
    assert_eq!(out.expect_error("bridge ADD at 1.1.0"), 1, "{out}");

    let version = CniCall::new("VERSION", "", "", json!({"cniVersion": "1.0.0"}));
    let out = invoke(&node, Path::new("/usr/lib/cni/bridge"), &version);
    let info = out.expect_ok("VERSION");
    assert!(
        info["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("1.0.0"))
    );
}

#[test]
fn bridge_conflist_through_libcni_driver() {
    let lab = Lab::new("selflibcni");
    let k8s_args = k8s_cni_args("default", "web-0", "ctr1");
    let cache = lab.subdir("cni-cache");
    for version in ["0.3.1", "0.4.0", "1.0.0"] {
        let (tag, node, pod, data_dir, conf) = bridge_setup(&lab, version);
        let file = lab.tmpdir().join(format!("conflist-{tag}.json"));
        write_json(&file, &conf);
        let pod_path = netns_path(&pod);
        let run = |op: &str| {
            libcni(
                &node,
                op,
                &file,
                &pod_path,
                "ctr1",
                "eth0",
                Some(&k8s_args),
                &cache,
            )
        };

        let added = run("add");
        let result = added.expect_ok(&format!("libcni ADD {version}"));
        assert_eq!(result["cniVersion"], version);
        assert_pod_attached(&node, &pod, &result);
        let cached = run("cached").expect_ok("libcni cached result");
        assert_eq!(result_ips(&cached), result_ips(&result));

        let checked = run("check");
        if version == "0.3.1" {
            assert!(
                !checked.success(),
                "libcni must refuse CHECK for 0.3.1: {checked}"
            );
            assert!(
                checked.stderr.contains("does not support the CHECK"),
                "{checked}"
            );
        } else {
            checked.expect_ok(&format!("libcni CHECK {version}"));
        }

        run("del").expect_ok(&format!("libcni DEL {version}"));
        assert_pod_detached(&pod, &data_dir, "selftest");
        run("del").expect_ok(&format!("libcni second DEL {version}"));
    }

    // A plugin's CNI error reaches the test with its code: the reference
    // bridge refuses cniVersion 1.1.0 with code 1 (incompatible versions).
    let node = lab.netns("node110");
    let pod = lab.netns("pod110");
    let mut conf = bridge_conflist(
        "selftest",
        "1.1.0",
        "cni0",
        &["10.244.1.0/24"],
        &lab.subdir("ipam110"),
        Value::Null,
    );
    conf["plugins"][0]
        .as_object_mut()
        .unwrap()
        .remove(SHIM_VERSION_KEY);
    let file = lab.tmpdir().join("conflist-110.json");
    write_json(&file, &conf);
    let out = libcni(
        &node,
        "add",
        &file,
        &netns_path(&pod),
        "ctr1",
        "eth0",
        None,
        &cache,
    );
    assert_eq!(out.expect_error("libcni ADD 1.1.0"), 1, "{out}");
    assert!(out.stderr.contains("cni-error-code: 1"), "{out}");
}

#[test]
fn conflist_runner_builds_configs_like_libcni() {
    let data_dir = Path::new("/nonexistent/ipam");
    let gw = gwsteer_plugin(Path::new("/tmp/state"), json!({"logLevel": "debug"}));
    let conf = bridge_conflist("net1", "1.1.0", "cni0", &["10.244.1.0/24"], data_dir, gw);
    assert_eq!(conf["plugins"].as_array().unwrap().len(), 2);
    assert_eq!(conf["plugins"][0]["ipam"]["dataDir"], "/nonexistent/ipam");
    assert_eq!(
        conf["plugins"][0]["ipam"]["routes"],
        json!([{"dst": "0.0.0.0/0"}])
    );

    // The bridge runs at 1.0.0 (Debian's plugins cannot speak 1.1.0); the key is not passed on.
    let (bridge, ty, version) = plugin_config(&conf, 0, None);
    assert_eq!((ty.as_str(), version.as_str()), ("bridge", "1.0.0"));
    assert_eq!(bridge["cniVersion"], "1.0.0");
    assert_eq!(bridge["name"], "net1");
    assert!(bridge.get(SHIM_VERSION_KEY).is_none() && bridge.get("prevResult").is_none());

    // gwsteer gets the list's version, name and the previous result relabelled to 1.1.0.
    let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.244.1.2/24"}]});
    let (cfg, ty, version) = plugin_config(&conf, 1, Some(&prev));
    assert_eq!((ty.as_str(), version.as_str()), ("gwsteer", "1.1.0"));
    assert_eq!(
        cfg,
        json!({
            "type": "gwsteer",
            "stateDir": "/tmp/state",
            "logLevel": "debug",
            "name": "net1",
            "cniVersion": "1.1.0",
            "prevResult": {"cniVersion": "1.1.0", "ips": [{"address": "10.244.1.2/24"}]},
        })
    );

    // Older results are passed as they are, never relabelled across schemas.
    let old = json!({"cniVersion": "0.4.0", "ips": []});
    let conf = bridge_conflist(
        "net1",
        "1.0.0",
        "cni0",
        &["fd00::/64"],
        data_dir,
        json!({"type": "gwsteer"}),
    );
    assert_eq!(plugin_config(&conf, 1, Some(&old)).0["prevResult"], old);
    assert_eq!(
        conf["plugins"][0]["ipam"]["routes"],
        json!([{"dst": "::/0"}])
    );
    assert!(conf["plugins"][0].get(SHIM_VERSION_KEY).is_none());
}
