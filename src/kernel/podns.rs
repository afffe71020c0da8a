//! Work inside a pod's network namespace beyond rules and routes: sysctls
//! (forwarding of a router pod), the router pod's masquerade table (`nft`)
//! and the pod side of a `connmark` policy (an nf_tables netlink batch).
//!
//! All run on a short-lived thread inside the pod's namespace
//! ([`Netns::run`]): `/proc/sys/net` answers for the netns of the task that
//! looks, so the thread sees the pod's values; `nft` started from that
//! thread, and a netlink socket opened on it, work in the pod's namespace.
//! The caller's thread never changes namespace.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result, code};
use crate::kernel::netns::Netns;
use crate::kernel::nft::command::{self, NftFailure};
use crate::kernel::nft::{json, nftables};
use crate::model::Presence;

/// Runs `f` on a thread inside the pod's network namespace.
fn in_pod<T: Send>(netns: Option<&Path>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    Netns::open_pod(netns)?.run(f)
}

/// A pod sysctl's value.
pub fn read_sysctl(netns: Option<&Path>, key: &str) -> Result<String> {
    let key = key.to_string();
    in_pod(netns, move || crate::kernel::sysctl::read(&key)).map_err(|e| e.context("in the pod"))
}

/// Sets a pod sysctl (unless it has the value already).
pub fn write_sysctl(netns: Option<&Path>, key: &str, value: &str) -> Result<()> {
    let (key, value) = (key.to_string(), value.to_string());
    in_pod(netns, move || {
        crate::kernel::sysctl::write(&key, &value).map(drop)
    })
    .map_err(|e| e.context("in the pod"))
}

pub fn observe_sysctl(netns: Option<&Path>, key: &str, value: &str) -> Result<Presence> {
    let now = read_sysctl(netns, key)?;
    Ok(if now == value {
        Presence::Present
    } else {
        Presence::Drifted(format!("is {now}"))
    })
}

/// The router pod's table: one per gateway interface, so that a pod on two
/// gateway networks has two.
fn table_name(ifname: &str) -> String {
    format!("gwsteer-router-{ifname}")
}

/// The `nft` command the masquerade of router pods and of the VRF runs.
pub(crate) fn find_nft() -> Result<PathBuf> {
    crate::kernel::nft::nftables::find_binary("nft").ok_or_else(|| {
        Error::new(
            code::NOT_AVAILABLE,
            "masquerade (router pods, vrf.masquerade) needs nftables: the nft command is not installed (looked in $PATH and the sbin directories)",
        )
    })
}

/// `nft ARGS` with `stdin` in the calling thread's network namespace; the
/// inner result is nft's stdout, or its complaint on stderr.
pub(crate) fn nft(args: &[&str], stdin: &str) -> Result<std::result::Result<String, String>> {
    run_nft(&find_nft()?, args, stdin, "running nft")
}

/// [`nft`] in the pod's network namespace.
fn nft_in(
    netns: Option<&Path>,
    args: &[&str],
    stdin: &str,
) -> Result<std::result::Result<String, String>> {
    let ns = Netns::open_pod(netns)?;
    let nft = find_nft()?;
    let running = format!("running nft in network namespace {}", ns.path().display());
    ns.run(|| run_nft(&nft, args, stdin, &running))
}

fn run_nft(
    nft: &Path,
    args: &[&str],
    stdin: &str,
    running: &str,
) -> Result<std::result::Result<String, String>> {
    match command::run(nft, args, stdin.as_bytes()) {
        Ok(out) => Ok(Ok(String::from_utf8_lossy(&out).into_owned())),
        Err(NftFailure::Refused(stderr)) => Ok(Err(stderr)),
        Err(NftFailure::Start(e)) => Err(Error::io(running, e)),
        Err(NftFailure::Write(e)) => Err(Error::io("writing to nft", e)),
        Err(NftFailure::Wait(e)) => Err(Error::io("waiting for nft", e)),
    }
}

/// `nft -j -f -` with `input` in the pod's network namespace.
fn nft_json_in(
    netns: Option<&Path>,
    input: &serde_json::Value,
) -> Result<std::result::Result<String, String>> {
    nft_in(netns, &["-j", "-f", "-"], &input.to_string())
}

/// The whole table in one transaction: made, or replaced if it drifted.
/// All of it goes as JSON: the interface name is the pod's, and may hold
/// anything Linux allows (`"`, `{`, `}`, `$` …).
pub fn ensure_masquerade(netns: Option<&Path>, ifname: &str) -> Result<()> {
    let table = table_name(ifname);
    let out_of = json::ifname_match("oifname", "!=", &[ifname.to_string()])
        .map_err(|e| Error::kernel(format!("router pod masquerade: {e}")))?;
    // `add table` then `flush table` makes it idempotent: the table's
    // content is exactly what follows.
    let tx = serde_json::json!({"nftables": [
        {"add": {"table": json::table(&table)}},
        {"flush": {"table": json::table(&table)}},
        json::chain(&table, "postrouting", "nat", "postrouting", 100),
        json::rule(&table, "postrouting", "gwsteer: router pod", vec![
            out_of,
            serde_json::json!({"masquerade": null}),
        ]),
    ]});
    nft_json_in(netns, &tx)?.map(drop).map_err(|e| {
        Error::kernel(format!(
            "making nftables table inet {table:?} in the pod: {e}"
        ))
    })
}

fn list(netns: Option<&Path>, ifname: &str) -> Result<Option<String>> {
    let table = table_name(ifname);
    match nft_json_in(netns, &json::on_table("list", &table))? {
        Ok(out) => Ok(Some(out)),
        Err(e) if e.contains("No such file") => Ok(None),
        Err(e) => Err(Error::kernel(format!(
            "reading nftables table inet {table:?} in the pod: {e}"
        ))),
    }
}

pub fn remove_masquerade(netns: Option<&Path>, ifname: &str) -> Result<()> {
    if list(netns, ifname)?.is_none() {
        return Ok(());
    }
    let table = table_name(ifname);
    match nft_json_in(netns, &json::on_table("delete", &table))? {
        Ok(_) => Ok(()),
        Err(e) if e.contains("No such file") => Ok(()),
        Err(e) => Err(Error::kernel(format!(
            "removing nftables table inet {table:?} in the pod: {e}"
        ))),
    }
}

/// Present when the table has the masquerade rule for `ifname`.
pub fn observe_masquerade(netns: Option<&Path>, ifname: &str) -> Result<Presence> {
    let Some(text) = list(netns, ifname)? else {
        return Ok(Presence::Missing);
    };
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::kernel(format!("nft printed JSON that does not parse: {e}")))?;
    // nft lists the name as it was given: escaped where it needed to be.
    let listed = json::literal_ifname(ifname).unwrap_or_default();
    let rules = json["nftables"].as_array().cloned().unwrap_or_default();
    let found = rules.iter().filter_map(|o| o.get("rule")).any(|rule| {
        let exprs = rule["expr"].as_array().cloned().unwrap_or_default();
        let masq = exprs.iter().any(|e| e.get("masquerade").is_some());
        let out_of = exprs.iter().any(|e| {
            e["match"]["op"] == "!="
                && e["match"]["left"]["meta"]["key"] == "oifname"
                && e["match"]["right"] == listed.as_str()
        });
        masq && out_of && rule["chain"] == "postrouting"
    });
    Ok(if found {
        Presence::Present
    } else {
        Presence::Drifted(format!(
            "table inet {:?} has no masquerade rule for traffic leaving by interfaces other than {ifname:?}",
            table_name(ifname)
        ))
    })
}

/// The pod side of a `connmark` policy, in one nf_tables netlink batch in
/// the pod's namespace (see `nft::ruleset::pod_connmark_plan`): no `nft`
/// process on the pod's ADD.
pub fn ensure_connmark(
    netns: Option<&Path>,
    policy: &str,
    ifname: &str,
    mark: u32,
    mask: u32,
) -> Result<()> {
    Netns::open_pod(netns)?.run(|| nftables::ensure_pod_connmark(policy, ifname, mark, mask))
}

pub fn remove_connmark(netns: Option<&Path>, policy: &str, ifname: &str) -> Result<()> {
    Netns::open_pod(netns)?.run(|| nftables::remove_pod_connmark(policy, ifname))
}

/// Present when the pod's table holds exactly the plan for `ifname` and
/// `mark`.
pub fn observe_connmark(
    netns: Option<&Path>,
    policy: &str,
    ifname: &str,
    mark: u32,
    mask: u32,
) -> Result<Presence> {
    Netns::open_pod(netns)?.run(|| nftables::observe_pod_connmark(policy, ifname, mark, mask))
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A named netns (`ip netns add`), deleted on drop, also when a test fails.
    struct NamedNetns(String);

    impl NamedNetns {
        fn new(tag: &str) -> NamedNetns {
            static SEQ: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "gwsteer-podnstest-{}-{tag}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            );
            let out = Command::new("ip")
                .args(["netns", "add", &name])
                .output()
                .expect("running ip");
            assert!(out.status.success(), "{out:?}");
            NamedNetns(name)
        }

        fn path(&self) -> PathBuf {
            PathBuf::from("/run/netns").join(&self.0)
        }

        /// `nft ARGS` in this namespace, by `ip netns exec`.
        fn nft(&self, args: &[&str]) -> std::process::Output {
            Command::new("ip")
                .args(["netns", "exec", &self.0, "nft"])
                .args(args)
                .output()
                .expect("running ip netns exec")
        }

        fn nft_stdin(&self, args: &[&str], input: &str) -> std::process::Output {
            use std::io::Write as _;
            let mut child = Command::new("ip")
                .args(["netns", "exec", &self.0, "nft"])
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("running ip netns exec");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child.wait_with_output().expect("waiting for nft")
        }
    }

    impl Drop for NamedNetns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }

    /// Names nft's text syntax would read as syntax or as a pattern reach
    /// it as JSON strings and are matched exactly.
    #[test]
    fn router_interface_names_reach_nft_as_json() {
        let pod = NamedNetns::new("names");
        let path = pod.path();
        for ifname in ["g\"{}$", "g;x#", "gw*", "g\\w"] {
            ensure_masquerade(Some(&path), ifname).unwrap();
            ensure_masquerade(Some(&path), ifname).unwrap();
            assert_eq!(
                observe_masquerade(Some(&path), ifname).unwrap(),
                Presence::Present,
                "{ifname}"
            );
            let listed = pod.nft(&["-j", "list", "ruleset"]);
            let text = String::from_utf8_lossy(&listed.stdout);
            let want = serde_json::json!(json::literal_ifname(ifname).unwrap()).to_string();
            assert!(
                text.contains(&format!("\"right\": {want}")),
                "{ifname}: {text}"
            );
            remove_masquerade(Some(&path), ifname).unwrap();
            assert_eq!(
                observe_masquerade(Some(&path), ifname).unwrap(),
                Presence::Missing
            );
            remove_masquerade(Some(&path), ifname).unwrap();
        }
        // The one name nft cannot match exactly is refused, not widened.
        let err = ensure_masquerade(Some(&path), "g\\*").unwrap_err();
        assert!(err.msg.contains("cannot be matched exactly"), "{err}");
        let listed = pod.nft(&["list", "ruleset"]);
        assert!(listed.stdout.is_empty(), "{listed:?}");
    }

    #[test]
    fn a_pod_side_connmark_table_is_made_observed_and_removed_in_the_pod() {
        let pod = NamedNetns::new("connmark");
        let path = pod.path();
        let table = "gwsteer-vip-net1";
        assert_eq!(
            observe_connmark(Some(&path), "vip", "net1", 0x14, u32::MAX).unwrap(),
            Presence::Missing
        );
        for _ in 0..2 {
            ensure_connmark(Some(&path), "vip", "net1", 0x14, u32::MAX).unwrap();
        }
        assert_eq!(
            observe_connmark(Some(&path), "vip", "net1", 0x14, u32::MAX).unwrap(),
            Presence::Present
        );
        let listed = pod.nft(&["list", "table", "inet", table]);
        let text = String::from_utf8_lossy(&listed.stdout);
        assert!(
            text.contains("iifname \"net1\" ct state new ct mark set 0x00000014"),
            "{text}"
        );
        assert!(
            text.contains("ct mark 0x00000014 meta mark set 0x00000014"),
            "{text}"
        );
        // Another mark is drift, not presence.
        assert!(matches!(
            observe_connmark(Some(&path), "vip", "net1", 0x15, u32::MAX).unwrap(),
            Presence::Drifted(_)
        ));
        // A mask keeps the other bits of both marks.
        ensure_connmark(Some(&path), "vip", "net1", 0x100, 0xff00).unwrap();
        let listed = pod.nft(&["list", "table", "inet", table]);
        let text = String::from_utf8_lossy(&listed.stdout);
        // nft folds the kept bits with the set bit: (m & 0xffff00ff) | 0x100.
        assert!(
            text.contains("ct mark set ct mark & 0xffff01ff | 0x00000100"),
            "{text}"
        );
        assert!(
            text.contains("ct mark & 0x0000ff00 == 0x00000100"),
            "{text}"
        );
        remove_connmark(Some(&path), "vip", "net1").unwrap();
        remove_connmark(Some(&path), "vip", "net1").unwrap();
        assert_eq!(
            observe_connmark(Some(&path), "vip", "net1", 0x100, 0xff00).unwrap(),
            Presence::Missing
        );
    }

    /// The table an earlier version made with `nft` (its rules carry no
    /// fingerprint) is drift, and ensure re-makes it; a name nft would read
    /// as a wildcard is matched exactly, as bytes.
    #[test]
    fn a_pod_side_connmark_table_of_an_earlier_version_is_remade() {
        let pod = NamedNetns::new("cmold");
        let path = pod.path();
        let script = "table inet gwsteer-vip-net1 {\n\
            chain prerouting { type filter hook prerouting priority -150; policy accept;\n\
              iifname \"net1\" ct state new ct mark set 0x14 comment \"gwsteer: connections arriving here\"; }\n\
            chain output { type route hook output priority -150; policy accept;\n\
              ct mark 0x14 meta mark set 0x14 comment \"gwsteer: replies leave where the request came in\"; }\n\
            }\n";
        let made = pod.nft_stdin(&["-f", "-"], script);
        assert!(made.status.success(), "{made:?}");
        assert!(matches!(
            observe_connmark(Some(&path), "vip", "net1", 0x14, u32::MAX).unwrap(),
            Presence::Drifted(_)
        ));
        ensure_connmark(Some(&path), "vip", "net1", 0x14, u32::MAX).unwrap();
        assert_eq!(
            observe_connmark(Some(&path), "vip", "net1", 0x14, u32::MAX).unwrap(),
            Presence::Present
        );
        let listed = pod.nft(&["list", "table", "inet", "gwsteer-vip-net1"]);
        let text = String::from_utf8_lossy(&listed.stdout);
        assert_eq!(text.matches("ct mark set").count(), 1, "{text}");
        assert_eq!(text.matches("meta mark set").count(), 1, "{text}");
        assert!(!text.contains("connections arriving here"), "{text}");

        ensure_connmark(Some(&path), "vip", "g*", 0x14, u32::MAX).unwrap();
        assert_eq!(
            observe_connmark(Some(&path), "vip", "g*", 0x14, u32::MAX).unwrap(),
            Presence::Present
        );
        remove_connmark(Some(&path), "vip", "g*").unwrap();
        remove_connmark(Some(&path), "vip", "net1").unwrap();
        let listed = pod.nft(&["list", "ruleset"]);
        assert!(listed.stdout.is_empty(), "{listed:?}");
    }

    #[test]
    fn the_router_masquerade_and_sysctls_live_in_the_pod_namespace() {
        let pod = NamedNetns::new("pod");
        let other = NamedNetns::new("other");
        let path = pod.path();
        let table = "gwsteer-router-net1";

        assert_eq!(
            observe_masquerade(Some(&path), "net1").unwrap(),
            Presence::Missing
        );
        ensure_masquerade(Some(&path), "net1").unwrap();
        let listed = pod.nft(&["list", "table", "inet", table]);
        assert!(listed.status.success(), "{listed:?}");
        assert!(
            !other
                .nft(&["list", "table", "inet", table])
                .status
                .success()
        );
        assert_eq!(
            observe_masquerade(Some(&path), "net1").unwrap(),
            Presence::Present
        );
        remove_masquerade(Some(&path), "net1").unwrap();
        assert!(!pod.nft(&["list", "table", "inet", table]).status.success());
        assert_eq!(
            observe_masquerade(Some(&path), "net1").unwrap(),
            Presence::Missing
        );
        remove_masquerade(Some(&path), "net1").unwrap();

        // The pod's value changes; the other namespace's does not.
        let key = "net.ipv4.ip_forward";
        let others = read_sysctl(Some(&other.path()), key).unwrap();
        for value in ["0", "1", "0"] {
            write_sysctl(Some(&path), key, value).unwrap();
            assert_eq!(read_sysctl(Some(&path), key).unwrap(), value);
            assert_eq!(
                observe_sysctl(Some(&path), key, value).unwrap(),
                Presence::Present
            );
            assert_eq!(read_sysctl(Some(&other.path()), key).unwrap(), others);
        }
        assert!(matches!(
            observe_sysctl(Some(&path), key, "1").unwrap(),
            Presence::Drifted(_)
        ));

        // A pod that is gone is told apart from a failure.
        let gone = other.path();
        drop(other);
        let err = ensure_masquerade(Some(&gone), "net1").unwrap_err();
        assert_eq!(err.code, code::UNKNOWN_CONTAINER, "{err}");
        let err = read_sysctl(Some(&gone), key).unwrap_err();
        assert_eq!(err.code, code::UNKNOWN_CONTAINER, "{err}");
    }
}
