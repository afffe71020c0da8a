//! Hostile input against the state store, with gwsteer invoked as a
//! runtime does in a node namespace: a user who owns a directory in the
//! store cannot make gwsteer write, delete or move a file outside it;
//! symlinks planted in the store are never followed (nor `logFile`); a
//! state directory others can change is refused, naming it; and DEL with
//! nothing recorded ends whatever the store's state.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::support::*;
use serde_json::{Value, json};

const NET: &str = "hs-net";
const TABLE: u32 = 100;

struct Node {
    lab: Lab,
    ns: String,
    state: PathBuf,
    log: PathBuf,
    /// Files outside the store, and their bytes: never to be touched.
    outside: PathBuf,
    /// `CNI_NETNS` of pod 1 and pod 2.
    pods: [String; 2],
}

impl Node {
    fn new(tag: &str) -> Node {
        let lab = Lab::new(tag);
        let ns = uplink_node(&lab);
        let state = lab.tmpdir().join("state");
        let log = lab.tmpdir().join("gwsteer.log");
        let outside = lab.subdir("outside");
        for name in ["a", "b", "target"] {
            fs::write(outside.join(name), format!("precious {name}\n")).unwrap();
        }
        let pods = [1, 2].map(|n| netns_path(&lab.netns(&format!("pod{n}"))));
        Node {
            lab,
            ns,
            state,
            log,
            outside,
            pods,
        }
    }

    fn config(&self) -> Value {
        json!({
            "cniVersion": "1.1.0",
            "name": NET,
            "type": "gwsteer",
            "stateDir": self.state,
            "logFile": self.log,
            "steering": [{
                "name": "oam",
                "table": TABLE,
                "gateways": [{"via": "192.0.2.254"}],
                "exclude": ["10.244.0.0/16"]
            }]
        })
    }

    fn prev(&self, n: u8, sandbox: &str) -> Value {
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "eth0", "sandbox": sandbox}],
            "ips": [{"address": format!("10.244.1.{n}/24"), "gateway": "10.244.1.1", "interface": 0}],
        })
    }

    fn call(&self, command: &str, cid: &str, config: &Value, n: u8) -> CniOutcome {
        let pod = self.pods[usize::from(n > 1)].clone();
        let mut config = config.clone();
        if command != "GC" {
            config["prevResult"] = self.prev(n, &pod);
        }
        let (cid, ifname) = if command == "GC" {
            ("", "")
        } else {
            (cid, "eth0")
        };
        let call = CniCall::new(command, cid, ifname, config)
            .netns(&pod)
            .cni_args(&k8s_cni_args("default", cid, cid));
        let out = invoke(&self.ns, &gwsteer_bin(), &call);
        assert!(!out.stderr.contains("panicked"), "{out}");
        out
    }

    fn add(&self, cid: &str, n: u8) {
        self.call("ADD", cid, &self.config(), n)
            .expect_ok(&format!("ADD {cid}"));
    }

    fn net_dir(&self) -> PathBuf {
        self.state.join(NET)
    }

    fn rules(&self) -> Vec<String> {
        self.lab
            .ip(&self.ns, ["-4", "rule", "show"])
            .lines()
            .filter(|l| l.contains(&format!("lookup {TABLE}")))
            .map(str::to_string)
            .collect()
    }

    /// Every file outside the store, byte for byte as it was made.
    fn assert_outside_untouched(&self, what: &str) {
        let found: BTreeMap<String, Vec<u8>> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap_or_default(),
                )
            })
            .collect();
        let made: BTreeMap<String, Vec<u8>> = ["a", "b", "target"]
            .iter()
            .map(|n| (n.to_string(), format!("precious {n}\n").into_bytes()))
            .collect();
        assert_eq!(found, made, "{what}: the files outside the store changed");
    }
}

/// Runs `script` with `sh -c` as nobody:nogroup, no supplementary groups.
fn as_nobody(script: &str) {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args(["sh", "-ec", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "as nobody: {script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
}

fn assert_refused(out: &CniOutcome, code: u64, path: &Path, what: &str) {
    assert_eq!(out.error_code(), Some(code), "{what}:\n{out}");
    let msg = out.error_msg().unwrap_or_default();
    assert!(
        msg.contains(&path.display().to_string()),
        "{what}: the error names {}:\n{out}",
        path.display()
    );
}

/// nobody owns the network's directory: it swaps `holds` and `attachments`
/// for links to its own directory and the lock for a link to a file there.
/// gwsteer refuses the store (code 5, naming it) for ADD, DEL and GC, and
/// touches nothing outside (before: GC deleted every file of the other
/// directory as "orphan holds").
#[test]
fn a_user_owning_a_store_directory_cannot_redirect_gwsteer() {
    let node = Node::new("hsnobody");
    node.add("c1", 1);
    let net = node.net_dir();
    fs::set_permissions(&node.state, fs::Permissions::from_mode(0o755)).unwrap();
    chown_nobody(&net);
    fs::set_permissions(&node.outside, fs::Permissions::from_mode(0o777)).unwrap();
    let (o, n) = (node.outside.display(), net.display());
    as_nobody(&format!(
        "cd {n}; mv holds holds.old; ln -s {o} holds; mv attachments attachments.old; \
         ln -s {o} attachments; rm -f lock lock.add; ln -s {o}/target lock; ln -s {o}/made lock.add"
    ));
    fs::set_permissions(&node.outside, fs::Permissions::from_mode(0o755)).unwrap();
    let mut gc = node.config();
    gc["cni.dev/valid-attachments"] = json!([]);
    for (command, config) in [("GC", gc), ("DEL", node.config()), ("ADD", node.config())] {
        let out = node.call(command, "c1", &config, 2);
        assert_refused(&out, 5, &net, command);
        node.assert_outside_untouched(command);
    }

    // nobody owns the state directory itself: code 7 (the config's stateDir).
    chown_nobody(&node.state);
    let out = node.call("DEL", "c1", &node.config(), 1);
    assert_refused(&out, 7, &node.state, "DEL, stateDir owned by nobody");
    node.assert_outside_untouched("stateDir owned by nobody");
}

/// Symlinks in a root-owned store (as a race or a careless operator could
/// leave them): at `holds/<group>`, the lock, a record and `logFile`. GC and
/// DEL succeed and touch nothing outside the store (before: GC deleted the
/// other directory's files, the lock made a file outside, the log was
/// appended to the target).
#[test]
fn symlinks_in_the_store_and_the_log_file_are_not_followed() {
    let node = Node::new("hslinks");
    node.add("c1", 1);
    let net = node.net_dir();
    let o = &node.outside;
    fs::remove_dir_all(net.join("holds/steering.oam")).unwrap();
    symlink(o, net.join("holds/steering.oam")).unwrap();
    fs::remove_file(net.join("lock")).unwrap();
    symlink(o.join("made-by-lock"), net.join("lock")).unwrap();
    symlink(o.join("target"), net.join("attachments/c9@eth0.json")).unwrap();
    fs::remove_file(&node.log).unwrap();
    symlink(o.join("target"), &node.log).unwrap();

    let mut gc = node.config();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    node.call("GC", "", &gc, 1).expect_ok("GC");
    node.assert_outside_untouched("GC");
    assert!(fs::symlink_metadata(net.join("lock")).unwrap().is_file());
    assert!(
        fs::symlink_metadata(net.join("holds/steering.oam"))
            .unwrap()
            .is_dir(),
        "holds/steering.oam is made again"
    );
    assert_eq!(
        fs::read_dir(net.join("holds/steering.oam"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        ["c1@eth0"],
        "the holder is made again from the record"
    );
    assert_eq!(node.rules().len(), 1, "GC kept c1's rule");
    node.call("DEL", "c1", &node.config(), 1).expect_ok("DEL");
    node.assert_outside_untouched("DEL");
    assert!(node.rules().is_empty(), "{:?}", node.rules());
}

/// A DEL with nothing recorded succeeds whatever the store's state: a
/// state directory that is a file, one on a read-only mount (with and
/// without the network's directory), no `<network>/`; and a DEL whose
/// group's `holds/<group>` is a regular file removes what it made
/// (before: code 5 for the file, the read-only mount and `holds`).
#[test]
fn del_ends_whatever_the_state_of_the_store() {
    let node = Node::new("hsdelends");
    let cfg = node.config();
    let del = |config: &Value, what: &str| {
        node.call("DEL", "never", config, 1)
            .expect_ok(&format!("DEL with {what}"));
    };

    fs::write(&node.state, b"not a directory").unwrap();
    del(&cfg, "a state directory that is a file");
    fs::remove_file(&node.state).unwrap();

    // No <network>/ in the state directory.
    fs::create_dir(&node.state).unwrap();
    fs::set_permissions(&node.state, fs::Permissions::from_mode(0o700)).unwrap();
    del(&cfg, "no directory for the network");
    assert!(!node.net_dir().exists(), "a DEL made the store");

    // A read-only state directory: gwsteer runs in a mount namespace of its
    // own where the state directory is bound read-only.
    let wrapper = node.lab.tmpdir().join("ro-gwsteer");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec unshare -m --propagation private sh -ec \
             'mount --bind \"$0\" \"$0\"; mount -o remount,bind,ro \"$0\"; exec \"$1\"' {} {}\n",
            node.state.display(),
            gwsteer_bin().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let ro_del = |what: &str| {
        let pod = node.pods[0].clone();
        let mut config = cfg.clone();
        config["prevResult"] = node.prev(1, &pod);
        let call = CniCall::new("DEL", "never", "eth0", config).netns(&pod);
        let out = invoke(&node.ns, &wrapper, &call);
        out.expect_ok(&format!("DEL on a read-only state directory {what}"));
    };
    ro_del("without the network's directory");
    node.add("c1", 1);
    ro_del("with the network's store, nothing recorded for this attachment");

    // holds/<group> is a regular file: DEL of the last holder still ends,
    // and removes what it made.
    let holds = node.net_dir().join("holds/steering.oam");
    fs::remove_dir_all(&holds).unwrap();
    fs::write(&holds, b"not a directory").unwrap();
    assert_eq!(node.rules().len(), 1);
    node.call("DEL", "c1", &cfg, 1)
        .expect_ok("DEL with holds/<group> a regular file");
    assert!(node.rules().is_empty(), "{:?}", node.rules());
    assert!(
        fs::read_dir(node.net_dir().join("corrupt"))
            .unwrap()
            .any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("holds.steering.oam")),
        "the file is set aside"
    );
}

/// A state directory under a directory anyone can write (no sticky bit) or
/// owned by nobody is refused with code 7, naming the directory, before
/// anything is made (before: accepted, and the store made there).
#[test]
fn a_state_dir_others_can_change_is_refused() {
    let node = Node::new("hsunsafe");
    let wide = node.lab.subdir("wide");
    fs::set_permissions(&wide, fs::Permissions::from_mode(0o777)).unwrap();
    let mut cfg = node.config();
    cfg["stateDir"] = json!(wide.join("state"));
    for command in ["ADD", "DEL"] {
        let out = node.call(command, "c1", &cfg, 1);
        assert_refused(&out, 7, &wide, command);
        assert!(
            out.error_msg().unwrap().contains("sticky"),
            "{command} says why:\n{out}"
        );
    }
    assert!(!wide.join("state").exists());
    assert!(node.rules().is_empty());

    let theirs = node.lab.subdir("theirs");
    chown_nobody(&theirs);
    cfg["stateDir"] = json!(theirs);
    let out = node.call("ADD", "c1", &cfg, 1);
    assert_refused(&out, 7, &theirs, "ADD, stateDir owned by nobody");
    assert!(
        out.error_msg().unwrap().contains("owned by uid 65534"),
        "{out}"
    );
    assert!(node.rules().is_empty());
}

/// A pod name with a newline (or ESC) cannot forge a log line: whatever
/// the call's outcome, every line of the log is gwsteer's own.
#[test]
fn a_pod_name_cannot_forge_a_log_line() {
    let node = Node::new("hslogline");
    let pod = node.pods[0].clone();
    let call = CniCall::new("DEL", "c1", "eth0", node.config())
        .netns(&pod)
        .cni_args(
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=x\nFORGED gwsteer[1] ERROR  \u{1b}[2Jowned",
        );
    let out = invoke(&node.ns, &gwsteer_bin(), &call);
    assert!(!out.stderr.contains("panicked"), "{out}");
    let log = fs::read_to_string(&node.log).unwrap();
    assert!(!log.is_empty());
    for line in log.lines() {
        assert!(
            line.len() > 24 && line.as_bytes()[4] == b'-' && line.as_bytes()[23] == b'Z',
            "a line that is not gwsteer's: {line:?}\n{log}"
        );
        assert!(!line.contains('\u{1b}'), "{line:?}");
    }
}

/// Holds a store's lock the way gwsteer does (`<network>/` and its `lock`,
/// both flock'ed) from `flock` processes in their own process group,
/// killed on drop.
struct Holder(std::process::Child);

impl Holder {
    fn start(net: &Path) -> Holder {
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new("flock")
            .arg(net)
            .arg("flock")
            .arg(net.join("lock"))
            .args(["sleep", "30"])
            .process_group(0)
            .spawn()
            .expect("run flock (util-linux)");
        let holder = Holder(child);
        wait_for(
            "flock to hold the lock",
            std::time::Duration::from_secs(5),
            || {
                std::process::Command::new("flock")
                    .args(["-n", "-E", "75"])
                    .arg(net.join("lock"))
                    .arg("true")
                    .status()
                    .is_ok_and(|s| s.code() == Some(75))
            },
        );
        holder
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// The lock file removed, or replaced, while a holder has the store: an
/// ADD arriving then does not run alongside it, it tries again later
/// (code 11) and gets in once the holder is gone (before: it made a fresh
/// lock file, locked it and ran).
#[test]
fn a_lock_file_removed_or_replaced_mid_call_keeps_the_next_caller_out() {
    let node = Node::new("hslockgone");
    let mut cfg = node.config();
    cfg["lockTimeoutMs"] = json!(400);
    node.add("c0", 1);
    let net = node.net_dir();
    for replace in [false, true] {
        let holder = Holder::start(&net);
        if replace {
            fs::write(net.join("lock.new"), b"").unwrap();
            fs::rename(net.join("lock.new"), net.join("lock")).unwrap();
        } else {
            fs::remove_file(net.join("lock")).unwrap();
        }
        let out = node.call("ADD", "c1", &cfg, 2);
        assert_eq!(out.error_code(), Some(11), "replaced: {replace}\n{out}");
        assert_eq!(node.rules().len(), 1, "only c0's rule: {:?}", node.rules());
        drop(holder);
    }
    node.call("ADD", "c1", &cfg, 2)
        .expect_ok("ADD once the holder is gone");
    assert_eq!(node.rules().len(), 2);
    for (cid, n) in [("c1", 2), ("c0", 1)] {
        node.call("DEL", cid, &cfg, n).expect_ok("DEL");
    }
    assert!(node.rules().is_empty());
}
