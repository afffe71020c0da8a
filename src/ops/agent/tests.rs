use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use super::adopt::{self, Cached, Decision};
use super::sweep::{Sweeper, Verdict};
use super::*;

#[test]
fn a_burst_makes_one_round_soon_after_it_ends() {
    let t0 = Instant::now();
    let mut p = Pending::new(t0, t0);
    assert_eq!(p.due(), t0 + QUIET);
    // Notifications keep coming: the round waits for the quiet, but not
    // beyond MAX_DELAY after the first.
    for i in 1..100 {
        let now = t0 + Duration::from_millis(i);
        p.add(Drained::default(), now);
    }
    assert_eq!(p.due(), t0 + MAX_DELAY);
    let held = Pending::new(t0, t0 + Duration::from_millis(500));
    assert_eq!(held.due(), t0 + Duration::from_millis(500));
}

#[test]
fn rounds_that_keep_finding_work_back_off() {
    assert_eq!(backoff(0), Duration::ZERO);
    assert_eq!(backoff(1), Duration::ZERO, "one echo round is normal");
    assert_eq!(backoff(2), Duration::from_millis(10));
    assert_eq!(backoff(3), Duration::from_millis(20));
    assert_eq!(backoff(10), MAX_BACKOFF);
    assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
}

#[test]
fn the_sweep_waits_for_the_grace_and_forgets_a_namespace_that_returns() {
    let grace = Duration::from_secs(300);
    let mut s = Sweeper::new(grace);
    let t0 = Instant::now();
    let key = || ("net".to_string(), "c1@eth0".to_string());
    let ns = Some(Path::new("/run/netns/p1"));
    assert_eq!(s.judge(key(), ns, true, t0), Verdict::Keep);
    assert_eq!(s.next_due(), None);
    assert_eq!(s.judge(key(), ns, false, t0), Verdict::Wait(t0));
    assert_eq!(s.next_due(), Some(t0 + grace));
    let later = t0 + Duration::from_secs(299);
    assert_eq!(s.judge(key(), ns, false, later), Verdict::Wait(t0));
    // Back: the clock stops, and starts again from zero.
    assert_eq!(s.judge(key(), ns, true, later), Verdict::Keep);
    assert_eq!(s.next_due(), None);
    let t1 = t0 + Duration::from_secs(400);
    assert_eq!(s.judge(key(), ns, false, t1), Verdict::Wait(t1));
    assert_eq!(s.judge(key(), ns, false, t1 + grace), Verdict::Sweep(t1));
    // No namespace path: never swept.
    let other = ("net".to_string(), "c2@eth0".to_string());
    assert_eq!(s.judge(other, None, false, t1 + grace * 10), Verdict::Keep);
}

#[test]
fn base64_of_go() {
    let text = "eyJhIjoxfQ=="; // {"a":1}
    let cached = format!(
        r#"{{"kind":"cniCacheV1","containerId":"c1","config":"{text}","ifName":"eth0","networkName":"n","result":{{"cniVersion":"1.0.0"}}}}"#
    );
    let c = adopt::parse_cache(&cached).unwrap();
    assert_eq!(c.config, json!({"a": 1}));
    assert!(adopt::parse_cache(&cached.replace("cniCacheV1", "x")).is_err());
    assert!(adopt::parse_cache(&cached.replace(text, "e!J")).is_err());
    assert!(adopt::parse_cache(&cached.replace(r#""c1""#, r#""""#)).is_err());
}

fn cached(config: serde_json::Value, sandbox: &str) -> Cached {
    Cached {
        container_id: "c1".into(),
        ifname: "eth0".into(),
        network: "kindnet".into(),
        config,
        cni_args: vec![("K8S_POD_NAMESPACE".into(), "oam".into())],
        capability_args: serde_json::from_value(json!({"portMappings": [{"hostPort": 80}]}))
            .unwrap(),
        result: json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0"},
                {"name": "vethx"},
                {"name": "eth0", "sandbox": sandbox}
            ],
            "ips": [{"address": "10.244.0.5/24", "interface": 2}]
        }),
    }
}

fn chained(state: &str) -> serde_json::Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "kindnet",
        "plugins": [
            {"type": "bridge", "bridge": "cni0"},
            {"type": "gwsteer", "stateDir": state, "capabilities": {"portMappings": true, "bandwidth": true}, "steering": []}
        ]
    })
}

#[test]
fn the_plugin_gets_what_libcni_would_give_it() {
    let c = cached(chained("/run/x"), "/run/netns/p1");
    let (plugin, version) = adopt::gwsteer_plugin(&c.config).unwrap();
    let stdin = adopt::plugin_stdin(&c, plugin, version);
    assert_eq!(stdin["name"], "kindnet");
    assert_eq!(stdin["cniVersion"], "1.0.0");
    assert_eq!(stdin["type"], "gwsteer");
    assert_eq!(
        stdin["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 80}]})
    );
    assert_eq!(stdin["prevResult"], c.result);
    assert_eq!(
        adopt::sandbox(&c.result, "eth0"),
        Some(PathBuf::from("/run/netns/p1"))
    );
    assert_eq!(adopt::sandbox(&c.result, "net1"), None);
}

#[test]
fn only_gwsteer_chains_of_this_state_dir_with_a_live_namespace_are_adopted() {
    let live = "/proc/self/ns/net";
    let state = Path::new("/run/x");
    let mut plain = chained("/run/x");
    plain["plugins"].as_array_mut().unwrap().pop();
    assert_eq!(adopt::judge(&cached(plain, live), state), Decision::NotOurs);
    assert_eq!(
        adopt::judge(&cached(chained("/run/x"), live), state),
        Decision::Adopt(PathBuf::from(live))
    );
    let Decision::Skip(why) = adopt::judge(&cached(chained("/run/other"), live), state) else {
        panic!("another state dir")
    };
    assert!(why.contains("/run/other"), "{why}");
    let Decision::Skip(why) = adopt::judge(&cached(chained("/run/x"), ""), state) else {
        panic!("no sandbox")
    };
    assert!(why.contains("no sandbox"), "{why}");
    let gone = "/run/netns/gwsteer-no-such-netns";
    let Decision::Skip(why) = adopt::judge(&cached(chained("/run/x"), gone), state) else {
        panic!("gone")
    };
    assert!(why.contains("is gone"), "{why}");
}

#[test]
fn a_cached_conflist_without_gwsteer_is_adopted_with_todays_conflist_of_its_network() {
    let dir = std::env::temp_dir().join(format!("gwsteer-agent-confs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, v: &serde_json::Value| {
        std::fs::write(dir.join(name), v.to_string()).unwrap();
    };
    let mut plain = chained("/run/x");
    plain["plugins"].as_array_mut().unwrap().pop();
    // libcni's order: the first file of a name wins; other names and
    // other extensions do not count.
    write(
        "05-other.conflist",
        &json!({"name": "other", "plugins": []}),
    );
    write("10-kindnet.conflist", &chained("/run/x"));
    write("20-kindnet.conflist", &plain);
    write("00-kindnet.conflist.bak", &plain);
    let confs = adopt::network_confs(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(confs.keys().collect::<Vec<_>>(), vec!["kindnet", "other"]);
    assert_eq!(
        confs["kindnet"].0.file_name().unwrap(),
        "10-kindnet.conflist"
    );

    let c = cached(plain.clone(), "/proc/self/ns/net");
    let (config, from) = adopt::effective(&c, &confs);
    assert_eq!(config, chained("/run/x"));
    assert_eq!(from.unwrap().file_name().unwrap(), "10-kindnet.conflist");
    // Its own conflist chains gwsteer: that one, whatever the conf dir says.
    let own = cached(chained("/run/own"), "/proc/self/ns/net");
    assert_eq!(adopt::effective(&own, &confs), (chained("/run/own"), None));
    // Neither chains gwsteer: not gwsteer's.
    let mut none = confs.clone();
    none.get_mut("kindnet").unwrap().1 = plain.clone();
    assert_eq!(adopt::effective(&c, &none), (plain, None));
}

/// What the cache says is run as root: a cache file (or dir) of another
/// owner, or one others may write, is not used.
#[test]
fn only_root_only_cache_files_are_read() {
    use std::os::unix::fs::{PermissionsExt, chown};
    let dir = std::env::temp_dir().join(format!("gwsteer-agent-owner-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("net-c1-eth0");
    std::fs::write(&file, "{}").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let meta = || std::fs::symlink_metadata(&file).unwrap();
    assert!(adopt::root_only(&meta()));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o622)).unwrap();
    assert!(!adopt::root_only(&meta()), "writable by others");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown(&file, Some(65534), None).unwrap();
    assert!(!adopt::root_only(&meta()), "nobody's");
    // A cache dir of another owner: nothing is read from it.
    chown(&dir, Some(65534), None).unwrap();
    let mut adopter = adopt::Adopter::new(None);
    assert!(adopter.pass(&dir, Path::new("/run/x")).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
