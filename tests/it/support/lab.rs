//! `Lab`: a per-test guard owning network namespaces and a temp dir.
//!
//! Names are `gw<tag>-<pid>-<n>-<name>`: the tag says which test made them, the
//! pid which run, `n` which `Lab` of that run. `Lab::new(tag)` first deletes
//! namespaces with the same tag left by an earlier run that crashed (its pid is
//! no longer a live test binary), so reruns start clean. Drop
//! deletes every namespace the lab made (also when the test panics) after
//! killing any process still inside, and removes the temp dir. Set
//! `GWSTEER_TEST_KEEP=1` to keep both for debugging.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::cmd::{exec_in, ip, netns_path, run, try_run};

static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);

const NETNS_DIR: &str = "/run/netns";
const TMP_PREFIX: &str = "gwsteer-test-";

pub struct Lab {
    tag: String,
    prefix: String,
    namespaces: Mutex<Vec<String>>,
    tmp: PathBuf,
}

impl Lab {
    /// A fresh lab for one test. `tag`: 1–10 lowercase letters/digits, unique per test.
    pub fn new(tag: &str) -> Lab {
        assert!(
            !tag.is_empty()
                && tag.len() <= 10
                && tag
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "Lab tag {tag:?}: use 1-10 lowercase letters or digits"
        );
        assert!(
            nix::unistd::geteuid().is_root(),
            "gwsteer integration tests need root (network namespaces)"
        );
        remove_stale(tag);
        let n = LAB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("gw{tag}-{}-{n}", std::process::id());
        let tmp = std::env::temp_dir().join(format!("{TMP_PREFIX}{prefix}"));
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("create {}: {e}", tmp.display()));
        Lab {
            tag: tag.to_string(),
            prefix,
            namespaces: Mutex::new(Vec::new()),
            tmp,
        }
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// `gw<tag>-<pid>-<n>`: every namespace of this lab is `<prefix>-<name>`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates netns `<prefix>-<name>` (lo up, DAD off, forwarding off) and returns its name.
    pub fn netns(&self, name: &str) -> String {
        self.make_netns(name, false)
    }

    /// Like [`Lab::netns`] but with IPv4 and IPv6 forwarding on.
    pub fn router(&self, name: &str) -> String {
        self.make_netns(name, true)
    }

    /// Names of the namespaces made so far, in creation order.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces.lock().unwrap().clone()
    }

    fn make_netns(&self, name: &str, forwarding: bool) -> String {
        assert!(
            !name.is_empty() && !name.contains('/') && !name.contains(char::is_whitespace),
            "bad netns name {name:?}"
        );
        let full = format!("{}-{name}", self.prefix);
        if Path::new(&netns_path(&full)).exists() {
            // Same pid and counter as a crashed run: it is ours to replace.
            delete_netns(&full);
        }
        run("ip", ["netns", "add", &full]);
        // Recorded before the next steps so Drop cleans up even if they panic.
        self.namespaces.lock().unwrap().push(full.clone());
        ip(&full, ["link", "set", "dev", "lo", "up"]);
        let fwd = if forwarding { "1" } else { "0" };
        // IPv4 devconf is inherited from the root namespace: pin what tests rely on.
        self.sysctls(
            &full,
            &[
                ("net.ipv6.conf.all.accept_dad", "0"),
                ("net.ipv6.conf.default.accept_dad", "0"),
                ("net.ipv4.ip_forward", fwd),
                ("net.ipv6.conf.all.forwarding", fwd),
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.default.rp_filter", "0"),
            ],
        );
        full
    }

    /// `sysctl -w key=value` inside `ns`.
    pub fn sysctl(&self, ns: &str, key: &str, value: &str) {
        self.sysctls(ns, &[(key, value)]);
    }

    pub fn sysctls(&self, ns: &str, pairs: &[(&str, &str)]) {
        let mut args = vec!["-q".to_string(), "-w".to_string()];
        args.extend(pairs.iter().map(|(k, v)| format!("{k}={v}")));
        exec_in(ns, "sysctl", &args);
    }

    /// Reads a sysctl inside `ns`.
    pub fn read_sysctl(&self, ns: &str, key: &str) -> String {
        exec_in(ns, "sysctl", ["-n", key]).trim().to_string()
    }

    /// A veth pair `if_a` (in `ns_a`) <-> `if_b` (in `ns_b`), both up.
    pub fn veth(&self, ns_a: &str, if_a: &str, ns_b: &str, if_b: &str) {
        ip(
            ns_a,
            [
                "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b,
            ],
        );
        ip(ns_a, ["link", "set", "dev", if_a, "up"]);
        ip(ns_b, ["link", "set", "dev", if_b, "up"]);
    }

    /// `ip addr add <cidr> dev <dev>` (with `nodad` for IPv6).
    pub fn addr(&self, ns: &str, dev: &str, cidr: &str) {
        if cidr.contains(':') {
            ip(ns, ["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
        } else {
            ip(ns, ["addr", "add", cidr, "dev", dev]);
        }
    }

    /// `ip -n <ns> route <args…>`, e.g. `&["add", "default", "via", "10.0.0.1"]`.
    pub fn route(&self, ns: &str, args: &[&str]) {
        let mut full = vec!["route"];
        full.extend_from_slice(args);
        ip(ns, full);
    }

    /// `ip -n <ns> <args…>`; stdout, panicking with stderr on failure.
    pub fn ip<I, S>(&self, ns: &str, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        ip(ns, args)
    }

    /// `ip netns exec <ns> <program> <args…>`; stdout, panicking with stderr on failure.
    pub fn exec<P, I, S>(&self, ns: &str, program: P, args: I) -> String
    where
        P: AsRef<OsStr>,
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        exec_in(ns, program, args)
    }

    /// The per-test temp dir (removed on drop).
    pub fn tmpdir(&self) -> &Path {
        &self.tmp
    }

    /// A subdirectory of the temp dir, created.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let dir = self.tmp.join(name);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        dir
    }

    /// Whether this kernel makes VRF devices (`CONFIG_NET_VRF`): tried in a
    /// scratch namespace of this lab.
    pub fn kernel_makes_vrf(&self) -> bool {
        let ns = self.netns("vrfprobe");
        super::cmd::try_ip(
            &ns,
            ["link", "add", "vrfprobe", "type", "vrf", "table", "4242"],
        )
        .is_ok()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let namespaces = self
            .namespaces
            .lock()
            .map(|v| v.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        if std::env::var_os("GWSTEER_TEST_KEEP").is_some_and(|v| v == "1") {
            eprintln!(
                "GWSTEER_TEST_KEEP=1: keeping netns {namespaces:?} and {}",
                self.tmp.display()
            );
            return;
        }
        for ns in namespaces.iter().rev() {
            delete_netns(ns);
        }
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

/// Kills what still runs inside `ns` (processes the tests started there), then deletes it.
fn delete_netns(ns: &str) {
    let me = std::process::id() as i32;
    if let Ok(pids) = try_run("ip", ["netns", "pids", ns]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if pid != me && pid > 1 {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    if let Err(e) = try_run("ip", ["netns", "del", ns])
        && Path::new(&netns_path(ns)).exists()
    {
        eprintln!("warning: cannot delete netns {ns}: {e}");
    }
}

/// True when `pid` is a live test binary of this suite, from this checkout
/// or another one: one named like this one (`<test>-<hash>`, any directory,
/// any hash), or any test binary cargo built (`…/deps/<test>-<hash>`), so
/// that a suite from a clone whose tests are still split into several
/// crates (`lifecycle-<hash>`, `crash-<hash>` …, tags shared with `it`) is
/// not taken for stale either. A second suite running at the same time
/// must keep its namespaces.
fn is_live_test_binary(pid: u32) -> bool {
    let stem = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .map(|n| n.rsplit_once('-').map_or(n.clone(), |(s, _)| s.to_string()))
    };
    let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let built_by_cargo = exe.parent().and_then(Path::file_name) == Some(OsStr::new("deps"))
        && exe
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains('-'));
    let mine = std::env::current_exe().ok().as_deref().and_then(stem);
    built_by_cargo || (mine.is_some() && mine == stem(&exe))
}

/// The pid in `gw<tag>-<pid>-…`, if `name` has that shape.
fn pid_of(name: &str, tag: &str) -> Option<u32> {
    let rest = name.strip_prefix(&format!("gw{tag}-"))?;
    rest.split('-').next()?.parse().ok()
}

fn stale(pid: u32) -> bool {
    pid != std::process::id() && !is_live_test_binary(pid)
}

/// Deletes namespaces and temp dirs of this tag left by earlier runs that died.
fn remove_stale(tag: &str) {
    if let Ok(entries) = fs::read_dir(NETNS_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if pid_of(&name, tag).is_some_and(stale) {
                eprintln!("removing stale netns {name}");
                delete_netns(&name);
            }
        }
    }
    if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(TMP_PREFIX)
                && pid_of(rest, tag).is_some_and(stale)
            {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}
