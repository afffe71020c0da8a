//! `gwsteer install` on a temp directory tree standing in for a node
//! (`opt/cni/bin`, `etc/cni/net.d`, under a path with a space in it, so that
//! argument handling is tested too): fresh install; upgrade in place (the
//! binary is replaced by rename: its inode changes, and a reader looping over
//! it meanwhile only ever sees the whole old or the whole new file, never a
//! part); chaining gwsteer after a single-plugin `.conf` (a `.conflist`
//! that Debian's libcni loads and runs ADD/DEL from, with the installed
//! binary on `CNI_PATH`); re-patching is idempotent to the byte; uninstall
//! leaves the tree exactly as it was, also after the primary rewrote its
//! file; bad input (a read-only conf dir included) changes nothing; a record
//! the shell installer left is undone. Also the static checks of the
//! DaemonSet and the Containerfile.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::*;
use serde_json::{Value, json};

/// `gwsteer install`, the command under test.
fn installer() -> Command {
    let mut cmd = Command::new(gwsteer_bin());
    cmd.arg("install");
    cmd
}

struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new(lab: &Lab) -> Tree {
        let root = lab.subdir("node root");
        fs::create_dir_all(root.join("opt/cni/bin")).unwrap();
        fs::create_dir_all(root.join("etc/cni/net.d")).unwrap();
        Tree { root }
    }
    fn bin_dir(&self) -> PathBuf {
        self.root.join("opt/cni/bin")
    }
    fn conf_dir(&self) -> PathBuf {
        self.root.join("etc/cni/net.d")
    }

    /// Runs the installer with the tree's directories; (exit code, output).
    fn install(&self, args: &[&str]) -> (i32, String) {
        let out = installer()
            .args(args)
            .env("CNI_BIN_DIR", self.bin_dir())
            .env("CNI_CONF_DIR", self.conf_dir())
            .output()
            .expect("run gwsteer install");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    fn install_ok(&self, args: &[&str]) -> String {
        let (code, text) = self.install(args);
        assert_eq!(code, 0, "gwsteer install {args:?}:\n{text}");
        text
    }

    /// Every file under the root with its inode: (relative path, contents, inode).
    fn snapshot_inodes(&self) -> Vec<(String, Vec<u8>, u64)> {
        self.snapshot()
            .into_iter()
            .map(|(p, bytes, _)| {
                let ino = fs::symlink_metadata(self.root.join(p.trim_end_matches('/')))
                    .unwrap()
                    .ino();
                (p, bytes, ino)
            })
            .collect()
    }

    /// Every file under the root: (relative path, contents, mode).
    fn snapshot(&self) -> Vec<(String, Vec<u8>, u32)> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>, u32)>) {
            for e in fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                let meta = fs::symlink_metadata(&p).unwrap();
                if meta.is_dir() {
                    out.push((format!("{rel}/"), vec![], meta.mode()));
                    walk(root, &p, out);
                } else {
                    out.push((rel, fs::read(&p).unwrap(), meta.mode()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out);
        out.sort();
        out
    }
}

/// The node's primary before gwsteer: a single-plugin bridge `.conf`.
fn primary_conf(lab: &Lab) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "podnet",
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": true,
        "ipMasq": false,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.244.1.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": lab.subdir("ipam"),
        },
    })
}

#[test]
fn install_upgrade_patch_and_uninstall_on_a_node_tree() {
    let lab = Lab::new("inst");
    let tree = Tree::new(&lab);
    // Something of the node's already there: left alone throughout.
    fs::write(tree.bin_dir().join("node-tool"), b"the node's own file").unwrap();
    let conf_text = serde_json::to_string_pretty(&primary_conf(&lab)).unwrap() + "\n";
    fs::write(tree.conf_dir().join("10-podnet.conf"), &conf_text).unwrap();
    let before = tree.snapshot();

    // Fresh install.
    let old_bin = lab.tmpdir().join("gwsteer-old");
    fs::copy(gwsteer_bin(), &old_bin).unwrap();
    let old = fs::read(&old_bin).unwrap();
    let installed = tree.bin_dir().join("gwsteer");
    tree.install_ok(&["--bin", old_bin.to_str().unwrap()]);
    assert_eq!(fs::read(&installed).unwrap(), old);
    assert_eq!(
        fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let v = Command::new(&installed).arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("gwsteer "));

    // Upgrade in place: a different binary (the old one with bytes
    // appended, still an ELF that runs), while a reader keeps reading.
    let new_bin = lab.tmpdir().join("gwsteer-new");
    let mut new = old.clone();
    new.extend_from_slice(&[0u8; 4096]);
    new.extend_from_slice(b"gwsteer-upgrade-marker");
    fs::write(&new_bin, &new).unwrap();
    let inode_before = fs::metadata(&installed).unwrap().ino();
    // Held open until the inode check below, so the filesystem cannot hand
    // this inode number to a later file (ext4 reuses freed ones at once).
    let held_open = fs::File::open(&installed).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, path, old, new) = (stop.clone(), installed.clone(), old.clone(), new.clone());
        std::thread::spawn(move || {
            let mut reads = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let got = fs::read(&path).expect("the binary is always there");
                assert!(
                    got == old || got == new,
                    "a reader saw a partial binary ({} bytes)",
                    got.len()
                );
                reads += 1;
            }
            reads
        })
    };
    for _ in 0..3 {
        tree.install_ok(&["--bin", new_bin.to_str().unwrap()]);
        tree.install_ok(&["--bin", old_bin.to_str().unwrap()]);
    }
    tree.install_ok(&["--bin", new_bin.to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("reader");
    assert!(reads > 0);
    assert_eq!(fs::read(&installed).unwrap(), new);
    assert_ne!(fs::metadata(&installed).unwrap().ino(), inode_before);
    drop(held_open);
    let leftovers: Vec<_> = fs::read_dir(tree.bin_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    // Chain gwsteer after the primary: the .conf becomes a .conflist.
    let plugin = lab.tmpdir().join("plugin.json");
    write_json(
        &plugin,
        &json!({"type": "gwsteer", "stateDir": lab.subdir("state"), "logLevel": "debug",
                "logFile": lab.tmpdir().join("gwsteer.log")}),
    );
    tree.install_ok(&[
        "--bin",
        new_bin.to_str().unwrap(),
        "--patch",
        "10-podnet.conf",
        "--plugin",
        plugin.to_str().unwrap(),
    ]);
    let conflist_path = tree.conf_dir().join("10-podnet.conflist");
    assert!(!tree.conf_dir().join("10-podnet.conf").exists());
    let conflist: Value = serde_json::from_slice(&fs::read(&conflist_path).unwrap())
        .expect("the patched conflist is JSON");
    assert_eq!(conflist["name"], "podnet");
    assert_eq!(conflist["cniVersion"], "1.0.0");
    let plugins = conflist["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 2, "{conflist}");
    assert_eq!(plugins[0]["type"], "bridge");
    assert!(plugins[0].get("name").is_none() && plugins[0].get("cniVersion").is_none());
    assert_eq!(plugins[0]["ipam"], primary_conf(&lab)["ipam"]);
    assert_eq!(plugins[1]["type"], "gwsteer");

    // Patching again (auto: the file the runtime uses) changes nothing,
    // byte for byte: no file is written anew (same inodes).
    let patched = tree.snapshot_inodes();
    tree.install_ok(&[
        "--bin",
        new_bin.to_str().unwrap(),
        "--patch",
        "auto",
        "--plugin",
        plugin.to_str().unwrap(),
    ]);
    let again: Value = serde_json::from_slice(&fs::read(&conflist_path).unwrap()).unwrap();
    assert_eq!(again, conflist);
    assert_eq!(
        tree.snapshot_inodes(),
        patched,
        "a second run writes nothing"
    );

    // libcni loads it and runs it, with the installed gwsteer on CNI_PATH.
    let node = lab.router("node");
    let pod = lab.netns("pod");
    let cache = lab.subdir("cni-cache");
    let cni_path = format!("{}:{REFERENCE_PLUGIN_DIR}", tree.bin_dir().display());
    let driver = |op: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", &node])
            .arg(libcni_driver())
            .arg(op)
            .arg(&conflist_path)
            .arg(netns_path(&pod))
            .args(["ctr1", "eth0", &k8s_cni_args("default", "web-0", "ctr1")])
            .env("CNI_PATH", &cni_path)
            .env("CNI_CACHE_DIR", &cache)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "libcni {op}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let result: Value = serde_json::from_str(&driver("add")).expect("ADD result");
    assert_eq!(result["cniVersion"], "1.0.0", "{result}");
    driver("check");
    driver("del");
    let log = fs::read_to_string(lab.tmpdir().join("gwsteer.log")).unwrap_or_default();
    assert!(log.contains("ADD"), "the installed gwsteer ran: {log}");

    // A conflist of one's own, then uninstall: the tree as it was.
    let mine = lab.tmpdir().join("99-extra.conflist");
    write_json(
        &mine,
        &json!({"cniVersion": "1.0.0", "name": "extra", "plugins": [{"type": "loopback"}]}),
    );
    tree.install_ok(&[
        "--bin",
        new_bin.to_str().unwrap(),
        "--conflist",
        mine.to_str().unwrap(),
    ]);
    assert!(tree.conf_dir().join("99-extra.conflist").is_file());
    tree.install_ok(&["--uninstall"]);
    assert_eq!(
        tree.snapshot(),
        before,
        "uninstall leaves the tree as before"
    );
}

#[test]
fn uninstall_after_the_primary_rewrote_its_conflist_takes_out_only_gwsteer() {
    let lab = Lab::new("inst2");
    let tree = Tree::new(&lab);
    let list = json!({"cniVersion": "0.3.1", "name": "kindnet", "plugins": [
        {"type": "ptp", "ipam": {"type": "host-local"}},
        {"type": "portmap", "capabilities": {"portMappings": true}},
    ]});
    let path = tree.conf_dir().join("10-kindnet.conflist");
    write_json(&path, &list);
    let bin = gwsteer_bin();
    tree.install_ok(&["--bin", bin.to_str().unwrap(), "--patch", "auto"]);
    let patched: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(patched["plugins"][2], json!({"type": "gwsteer"}));
    assert_eq!(patched["plugins"][0], list["plugins"][0]);
    // The primary's agent rewrites the file (kindnet does, from a template),
    // keeping gwsteer's entry but changing something else.
    let mut rewritten = patched.clone();
    rewritten["plugins"][0]["mtu"] = json!(1400);
    write_json(&path, &rewritten);
    tree.install_ok(&["--uninstall"]);
    let after: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let mut want = list.clone();
    want["plugins"][0]["mtu"] = json!(1400);
    assert_eq!(after, want);
    assert!(!tree.bin_dir().join("gwsteer").exists());
    assert!(!tree.conf_dir().join(".gwsteer-install").exists());
}

#[test]
fn install_refuses_bad_input_and_changes_nothing() {
    let lab = Lab::new("inst3");
    let tree = Tree::new(&lab);
    let bin = gwsteer_bin();
    let bad = lab.tmpdir().join("bad.json");
    fs::write(&bad, "{not json").unwrap();
    let not_gwsteer = lab.tmpdir().join("not-gwsteer.json");
    fs::write(&not_gwsteer, r#"{"type": "bridge"}"#).unwrap();
    let bin = bin.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--bogus"], "unknown argument: --bogus"),
        (
            vec!["--bin", "/nonexistent/gwsteer"],
            "/nonexistent/gwsteer",
        ),
        (
            vec!["--bin", bin, "--patch", "nope.conflist"],
            "nope.conflist does not exist",
        ),
        (vec!["--bin", bin, "--patch", "auto"], "no conf file"),
        (
            vec!["--bin", bin, "--conflist", bad.to_str().unwrap()],
            "bad.json: not a conflist",
        ),
    ];
    let before = tree.snapshot();
    for (args, why) in &cases {
        let (code, text) = tree.install(args);
        assert_ne!(code, 0, "gwsteer install {args:?} must fail:\n{text}");
        assert!(
            text.contains("gwsteer install: ") && text.contains(why),
            "{why}: {text}"
        );
        // Everything is checked before the first write: the binary is not
        // installed either (the shell installer installed it first).
        assert_eq!(
            tree.snapshot(),
            before,
            "gwsteer install {args:?} changed the tree"
        );
    }
    // With a primary: an unparsable one, and a plugin object that is none.
    let primary = tree.conf_dir().join("10-kindnet.conflist");
    fs::write(&primary, "{\"cniVersion\": \"0.3.1\", \"plugins\": [").unwrap();
    let before = tree.snapshot();
    let (code, text) = tree.install(&["--bin", bin, "--patch", "auto"]);
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains(&format!("{}: not valid JSON", primary.display())),
        "{text}"
    );
    assert_eq!(tree.snapshot(), before);
    write_json(
        &primary,
        &json!({"cniVersion": "0.3.1", "name": "kindnet", "plugins": [{"type": "ptp"}]}),
    );
    let before = tree.snapshot();
    let (code, text) =
        tree.install(&["--patch", "auto", "--plugin", not_gwsteer.to_str().unwrap()]);
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("not-gwsteer.json: must be a JSON object with \"type\": \"gwsteer\""),
        "{text}"
    );
    assert_eq!(tree.snapshot(), before);
    let after: Vec<String> = tree.snapshot().into_iter().map(|(p, _, _)| p).collect();
    for p in &after {
        assert!(!p.contains(".gwsteer-tmp"), "temp file left: {p}");
    }
    tree.install_ok(&["--uninstall"]);
    assert_eq!(tree.snapshot(), before);
}

/// A conf dir on a read-only mount (root may write anywhere else): a clear
/// error naming it, exit 1, and nothing installed, the binary included. The
/// mount is made in a private mount namespace of the one command.
#[test]
fn a_read_only_conf_dir_is_refused_and_nothing_is_installed() {
    let lab = Lab::new("inst4");
    let tree = Tree::new(&lab);
    write_json(
        &tree.conf_dir().join("10-kindnet.conflist"),
        &json!({"cniVersion": "0.3.1", "name": "kindnet", "plugins": [{"type": "ptp"}]}),
    );
    let before = tree.snapshot();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@""#)
        .arg("sh")
        .arg(tree.conf_dir())
        .arg(gwsteer_bin())
        .args(["install", "--patch", "auto"])
        .env("CNI_BIN_DIR", tree.bin_dir())
        .env("CNI_CONF_DIR", tree.conf_dir())
        .output()
        .expect("unshare");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("{} is not writable", tree.conf_dir().display()))
            && text.contains("Read-only file system"),
        "{text}"
    );
    assert_eq!(tree.snapshot(), before);
}

/// kindnet writes its conflist anew from its template when it restarts;
/// chaining again (`rollout restart`, or a node agent) must then keep that
/// newer file as the one to restore. The shell installer restored the first,
/// stale one, and left an unparsable rewritten file empty on uninstall.
#[test]
fn uninstall_after_the_primary_wrote_its_file_anew_restores_the_new_one() {
    let lab = Lab::new("inst5");
    let tree = Tree::new(&lab);
    let path = tree.conf_dir().join("10-kindnet.conflist");
    let list = |mtu: u32| json!({"cniVersion": "0.3.1", "name": "kindnet", "plugins": [{"type": "ptp", "mtu": mtu}]});
    write_json(&path, &list(1500));
    let bin = gwsteer_bin();
    let bin = bin.to_str().unwrap();
    tree.install_ok(&["--bin", bin, "--patch", "auto"]);
    write_json(&path, &list(1400));
    let restarted = fs::read(&path).unwrap();
    let text = tree.install_ok(&["--bin", bin, "--patch", "auto"]);
    assert!(text.contains("chained gwsteer into"), "{text}");
    tree.install_ok(&["--uninstall"]);
    assert_eq!(
        fs::read(&path).unwrap(),
        restarted,
        "the newer file comes back"
    );

    // Rewritten unparsable: an error naming it, the file as it is.
    tree.install_ok(&["--bin", bin, "--patch", "auto"]);
    fs::write(&path, "{\"cniVersion\": broken").unwrap();
    let (code, text) = tree.install(&["--uninstall"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("{}: not valid JSON", path.display())),
        "{text}"
    );
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "{\"cniVersion\": broken"
    );
    assert!(
        tree.bin_dir().join("gwsteer").exists(),
        "kept: a chain may name it"
    );
    write_json(&path, &list(1400));
    tree.install_ok(&["--uninstall"]);
    assert!(!tree.bin_dir().join("gwsteer").exists());
    assert!(!tree.conf_dir().join(".gwsteer-install").exists());
}

/// A node the shell installer patched (its record: `orig` copied with its
/// mode, `wrote`, and `sha` as `sha256sum` printed it) is undone by
/// `gwsteer install --uninstall`, byte for byte.
#[test]
fn a_record_the_shell_installer_left_is_undone() {
    let lab = Lab::new("inst6");
    let tree = Tree::new(&lab);
    let conf = tree.conf_dir().join("10-podnet.conf");
    fs::write(
        &conf,
        serde_json::to_string_pretty(&primary_conf(&lab)).unwrap() + "\n",
    )
    .unwrap();
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o640)).unwrap();
    let before = tree.snapshot();
    // What install.sh --patch 10-podnet.conf left behind.
    let record = tree
        .conf_dir()
        .join(".gwsteer-install/patch-10-podnet.conf");
    fs::create_dir_all(&record).unwrap();
    assert!(
        Command::new("cp")
            .arg("-p")
            .arg(&conf)
            .arg(record.join("orig"))
            .status()
            .unwrap()
            .success()
    );
    fs::write(record.join("wrote"), "10-podnet.conflist\n").unwrap();
    let mut list = json!({"cniVersion": "1.0.0", "name": "podnet", "plugins": [primary_conf(&lab), {"type": "gwsteer"}]});
    list["plugins"][0].as_object_mut().unwrap().remove("name");
    list["plugins"][0]
        .as_object_mut()
        .unwrap()
        .remove("cniVersion");
    let produced = tree.conf_dir().join("10-podnet.conflist");
    fs::write(
        &produced,
        serde_json::to_string_pretty(&list).unwrap() + "\n",
    )
    .unwrap();
    fs::remove_file(&conf).unwrap();
    let sha = Command::new("sha256sum").arg(&produced).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout);
    fs::write(
        record.join("sha"),
        format!("{}\n", sha.split(' ').next().unwrap()),
    )
    .unwrap();
    fs::copy(gwsteer_bin(), tree.bin_dir().join("gwsteer")).unwrap();
    // Chaining again sees its own product and changes nothing.
    let text = tree.install_ok(&["--patch", "auto"]);
    assert!(text.contains("already chains gwsteer"), "{text}");
    tree.install_ok(&["--uninstall"]);
    assert_eq!(tree.snapshot(), before);
}

#[test]
fn daemonset_and_containerfile_hold_what_the_install_needs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("install");
    let ds = fs::read_to_string(dir.join("daemonset.yaml")).unwrap();
    for needle in [
        "kind: DaemonSet",
        "hostNetwork: true",
        "privileged: true",
        "path: /opt/cni/bin",
        "path: /etc/cni/net.d",
        "initContainers:",
        "command: [\"/usr/local/bin/gwsteer\"]",
        "args: [\"install\", \"--patch\", \"auto\", \"--plugin\", \"/config/plugin.json\"]",
        "args: [\"agent\", \"--interval\", \"60s\",",
        "\"--plugin\", \"/config/plugin.json\",",
        "\"--heartbeat\", \"/run/gwsteer-agent/alive\"]",
        "livenessProbe:",
        "command: [\"/usr/local/bin/gwsteer\", \"agent\", \"--alive\",",
        "path: /var/lib/cni/results",
    ] {
        assert!(ds.contains(needle), "daemonset.yaml lacks {needle:?}");
    }
    // The ConfigMap's plugin object is a gwsteer entry that validates.
    let start = ds.find("plugin.json: |").unwrap();
    let block: String = ds[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let mut plugin: Value = serde_json::from_str(&block).expect("plugin.json is JSON");
    plugin["cniVersion"] = json!("1.0.0");
    plugin["name"] = json!("kindnet");
    gwsteer::config::Config::from_value(&plugin).expect("plugin.json validates");
    // The image: the static binary FROM scratch, nothing else — no shell,
    // so no step of the install may need one.
    let cf = fs::read_to_string(dir.join("Containerfile")).unwrap();
    let steps: Vec<&str> = cf
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        steps,
        [
            "FROM scratch",
            "COPY target/release/gwsteer /usr/local/bin/gwsteer",
            "ENTRYPOINT [\"/usr/local/bin/gwsteer\"]",
            "CMD [\"version\"]",
        ]
    );
    assert!(
        cf.contains("cargo build --release"),
        "says how to build the binary"
    );
    assert!(
        !dir.join("install.sh").exists(),
        "gwsteer install replaced install.sh"
    );
    // The build context is the binary alone.
    let ignore = fs::read_to_string(dir.join("../.dockerignore")).unwrap();
    let rules: Vec<&str> = ignore.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(rules, ["*", "!target/release/gwsteer"]);
    // Every container command is the binary itself: no shell in the image.
    for line in ds
        .lines()
        .filter(|l| l.trim_start().starts_with("command:"))
    {
        assert!(line.contains("[\"/usr/local/bin/gwsteer\""), "{line}");
    }
}
