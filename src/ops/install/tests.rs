//! The installer on temp trees: chaining (append, replace, `.conf` →
//! `.conflist`), idempotence to the byte and the inode, the record and
//! `--uninstall`, and bad input refused with nothing changed.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::files::first_conf;
use super::json::Json;
use super::*;

struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gwsteer-install-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("net.d")).unwrap();
        fs::create_dir_all(dir.join("bin")).unwrap();
        Tmp(dir)
    }
    fn conf(&self) -> PathBuf {
        self.0.join("net.d")
    }
    fn bin(&self) -> PathBuf {
        self.0.join("bin")
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.conf().join(name);
        fs::write(&p, text).unwrap();
        p
    }
    /// Every file under the conf dir: (path, bytes, mode, inode).
    fn snapshot(&self) -> Vec<(String, Vec<u8>, u32, u64)> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>, u32, u64)>) {
            for e in fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                let m = fs::symlink_metadata(&p).unwrap();
                if m.is_dir() {
                    out.push((rel + "/", vec![], m.mode(), m.ino()));
                    walk(root, &p, out);
                } else if m.file_type().is_symlink() {
                    out.push((rel, vec![], m.mode(), m.ino()));
                } else {
                    out.push((rel, fs::read(&p).unwrap(), m.mode(), m.ino()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &self.0, &mut out);
        out.sort();
        out
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const KINDNET: &str = r#"{
	"cniVersion": "0.3.1",
	"name": "kindnet",
	"plugins": [
	{
		"type": "ptp",
		"ipMasq": false,
		"ipam": {"type": "host-local", "dataDir": "/run/cni-ipam-state", "ranges": [[{"subnet": "10.244.0.0/24"}]]},
		"mtu": 1500
	},
	{"type": "portmap", "capabilities": {"portMappings": true}}
	]
}
"#;

const BRIDGE_CONF: &str = r#"{"cniVersion":"1.0.0","name":"podnet","type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.244.1.0/24"}}"#;

fn plugin(text: &str) -> Plugin {
    Plugin::from_json(text.as_bytes(), "plugin.json").unwrap()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

#[test]
fn sha256_matches_the_standard_vectors() {
    assert_eq!(
        sha256::hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256::hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    // 56 bytes: the length no longer fits the first padding block.
    assert_eq!(
        sha256::hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    assert_eq!(
        sha256::hex(
            b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
        ),
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
    );
}

#[test]
fn json_keeps_key_order_and_writes_like_jq() {
    let doc = Json::parse(br#"{"z": 1, "a": [true, null, 1.5, "x"], "m": {}}"#).unwrap();
    assert_eq!(
        String::from_utf8(doc.to_pretty()).unwrap(),
        "{\n  \"z\": 1,\n  \"a\": [\n    true,\n    null,\n    1.5,\n    \"x\"\n  ],\n  \"m\": {}\n}\n"
    );
    assert_eq!(doc.to_value()["a"][3], "x");
}

#[test]
fn the_file_the_runtime_uses_is_the_first_conf_name_in_byte_order() {
    let t = Tmp::new("first");
    assert_eq!(first_conf(&t.conf()).unwrap(), None);
    t.write("README", "not a conf");
    t.write("20-b.conflist", "{}");
    t.write("Z-upper.json", "{}");
    assert_eq!(
        first_conf(&t.conf()).unwrap().as_deref(),
        Some("20-b.conflist")
    );
    t.write("10-a.json", "{}");
    fs::create_dir(t.conf().join("00-dir.conf")).unwrap();
    assert_eq!(first_conf(&t.conf()).unwrap().as_deref(), Some("10-a.json"));
    // libcni lists hidden names too; temp files never match an extension.
    t.write(".gwsteer-tmp.1.2.3.tmp", "{}");
    t.write(".05-hidden.conf", "{}");
    assert_eq!(
        first_conf(&t.conf()).unwrap().as_deref(),
        Some(".05-hidden.conf")
    );
    assert_eq!(
        first_conf(&t.0.join("missing")).unwrap(),
        None,
        "a conf dir not there yet has no primary"
    );
}

#[test]
fn chaining_a_conflist_appends_keeps_its_order_and_is_idempotent() {
    let t = Tmp::new("append");
    let path = t.write("10-kindnet.conflist", KINDNET);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let first = chain(&t.conf(), &Plugin::default()).unwrap();
    assert_eq!(first.file, path);
    assert_eq!(first.change, Change::Appended);
    assert!(first.changed());
    let text = fs::read_to_string(&path).unwrap();
    // The primary's keys in its order, gwsteer last.
    let order: Vec<usize> = [
        "\"cniVersion\"",
        "\"name\"",
        "\"plugins\"",
        "\"ptp\"",
        "\"ipMasq\"",
        "\"ipam\"",
        "\"mtu\"",
        "\"portmap\"",
        "\"gwsteer\"",
    ]
    .iter()
    .map(|k| text.find(k).unwrap_or_else(|| panic!("{k} in {text}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    let v = read_json(&path);
    let mut want: serde_json::Value = serde_json::from_str(KINDNET).unwrap();
    want["plugins"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "gwsteer"}));
    assert_eq!(v, want);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Again: nothing written, not even the record (same bytes, same inodes).
    let before = t.snapshot();
    let again = chain(&t.conf(), &Plugin::default()).unwrap();
    assert_eq!(again.change, Change::Unchanged);
    assert_eq!(
        again.to_string(),
        format!("{} already chains gwsteer", path.display())
    );
    assert_eq!(t.snapshot(), before);

    // A different plugin object replaces the entry in place.
    let p = plugin(r#"{"type": "gwsteer", "logLevel": "debug"}"#);
    assert_eq!(chain(&t.conf(), &p).unwrap().change, Change::Replaced);
    let v = read_json(&path);
    assert_eq!(v["plugins"].as_array().unwrap().len(), 3);
    assert_eq!(v["plugins"][2]["logLevel"], "debug");

    // Uninstall: the original back, byte for byte and mode.
    let undone = uninstall(&t.bin(), &t.conf());
    assert!(undone.problems.is_empty(), "{:?}", undone.problems);
    assert_eq!(fs::read_to_string(&path).unwrap(), KINDNET);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!t.conf().join(STATE_DIR).exists());
}

#[test]
fn a_single_plugin_conf_becomes_a_conflist_and_comes_back() {
    let t = Tmp::new("conf");
    let conf = t.write("10-podnet.conf", BRIDGE_CONF);
    let out = chain(&t.conf(), &Plugin::default()).unwrap();
    let list = t.conf().join("10-podnet.conflist");
    assert_eq!(
        out,
        ChainOutcome {
            file: list.clone(),
            change: Change::Converted { from: conf.clone() }
        }
    );
    assert!(!conf.exists(), "the .conf would sort first and win");
    let v = read_json(&list);
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(v["name"], "podnet");
    assert_eq!(v["plugins"][0]["type"], "bridge");
    assert!(v["plugins"][0].get("name").is_none());
    assert_eq!(v["plugins"][1], serde_json::json!({"type": "gwsteer"}));
    // Its record, as the shell installer laid it out.
    let record = t.conf().join(STATE_DIR).join("patch-10-podnet.conf");
    assert_eq!(
        fs::read_to_string(record.join("orig")).unwrap(),
        BRIDGE_CONF
    );
    assert_eq!(
        fs::read_to_string(record.join("wrote")).unwrap(),
        "10-podnet.conflist\n"
    );
    assert_eq!(
        fs::read_to_string(record.join("sha")).unwrap(),
        format!("{}\n", sha256::hex(&fs::read(&list).unwrap()))
    );
    // auto now picks the conflist, which stands for the .conf: unchanged.
    let before = t.snapshot();
    assert_eq!(
        chain(&t.conf(), &Plugin::default()).unwrap().change,
        Change::Unchanged
    );
    assert_eq!(
        patch(
            &t.conf(),
            &Target::Named("10-podnet.conf".into()),
            &Plugin::default()
        )
        .unwrap()
        .change,
        Change::Unchanged
    );
    assert_eq!(t.snapshot(), before);

    let undone = uninstall(&t.bin(), &t.conf());
    assert!(undone.problems.is_empty(), "{:?}", undone.problems);
    assert_eq!(fs::read_to_string(&conf).unwrap(), BRIDGE_CONF);
    assert!(!list.exists());
    assert!(!t.conf().join(STATE_DIR).exists());
}

/// A primary that restarts writes its file anew without gwsteer; chaining
/// again must take that file as the one to restore, not the first one (the
/// shell installer restored the stale first original).
#[test]
fn after_the_primary_rewrote_its_file_uninstall_restores_the_newer_one() {
    let t = Tmp::new("rewrite");
    let path = t.write("10-kindnet.conflist", KINDNET);
    chain(&t.conf(), &Plugin::default()).unwrap();
    let newer = KINDNET.replace("1500", "1400");
    fs::write(&path, &newer).unwrap();
    let out = chain(&t.conf(), &Plugin::default()).unwrap();
    assert_eq!(out.change, Change::Appended);
    assert_eq!(read_json(&path)["plugins"][2]["type"], "gwsteer");
    let undone = uninstall(&t.bin(), &t.conf());
    assert!(undone.problems.is_empty(), "{:?}", undone.problems);
    assert_eq!(fs::read_to_string(&path).unwrap(), newer);

    // The same for a .conf the primary writes again next to our conflist.
    let t = Tmp::new("rewrite-conf");
    let conf = t.write("10-podnet.conf", BRIDGE_CONF);
    chain(&t.conf(), &Plugin::default()).unwrap();
    let newer = BRIDGE_CONF.replace("10.244.1.0", "10.244.7.0");
    fs::write(&conf, &newer).unwrap();
    let out = chain(&t.conf(), &Plugin::default()).unwrap();
    assert!(matches!(out.change, Change::Converted { .. }), "{out:?}");
    assert!(!conf.exists());
    assert_eq!(
        read_json(&t.conf().join("10-podnet.conflist"))["plugins"][0]["ipam"]["subnet"],
        "10.244.7.0/24"
    );
    uninstall(&t.bin(), &t.conf());
    assert_eq!(fs::read_to_string(&conf).unwrap(), newer);
    assert!(!t.conf().join("10-podnet.conflist").exists());
}

#[test]
fn uninstall_after_a_rewrite_takes_out_only_gwsteer_and_never_truncates() {
    let t = Tmp::new("owner");
    let path = t.write("10-kindnet.conflist", KINDNET);
    fs::write(t.bin().join("gwsteer"), b"binary").unwrap();
    chain(&t.conf(), &Plugin::default()).unwrap();
    // The owner keeps gwsteer's entry but changes something else.
    let mut v = read_json(&path);
    v["plugins"][0]["mtu"] = 1400.into();
    fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    // A node agent calling chain meanwhile changes nothing.
    assert_eq!(
        chain(&t.conf(), &Plugin::default()).unwrap().change,
        Change::Unchanged
    );
    let undone = uninstall(&t.bin(), &t.conf());
    assert!(undone.problems.is_empty(), "{:?}", undone.problems);
    let mut want: serde_json::Value = serde_json::from_str(KINDNET).unwrap();
    want["plugins"][0]["mtu"] = 1400.into();
    assert_eq!(read_json(&path), want);
    assert!(!t.bin().join("gwsteer").exists());

    // An unparsable rewrite: an error naming it, the file as it is, the
    // record and the binary kept (the shell installer left it empty).
    let t = Tmp::new("owner-bad");
    let path = t.write("10-kindnet.conflist", KINDNET);
    fs::write(t.bin().join("gwsteer"), b"binary").unwrap();
    chain(&t.conf(), &Plugin::default()).unwrap();
    fs::write(&path, "{\"cniVersion\": broken").unwrap();
    let undone = uninstall(&t.bin(), &t.conf());
    assert_eq!(undone.problems.len(), 1);
    let msg = undone.problems[0].to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("not valid JSON"),
        "{msg}"
    );
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "{\"cniVersion\": broken"
    );
    assert!(
        t.conf()
            .join(STATE_DIR)
            .join("patch-10-kindnet.conflist/orig")
            .exists()
    );
    assert!(t.bin().join("gwsteer").exists());
    // Fixed by its owner, a rerun finishes.
    fs::write(&path, KINDNET).unwrap();
    let undone = uninstall(&t.bin(), &t.conf());
    assert!(undone.problems.is_empty(), "{:?}", undone.problems);
    assert_eq!(fs::read_to_string(&path).unwrap(), KINDNET);
    assert!(!t.conf().join(STATE_DIR).exists());
    assert!(!t.bin().join("gwsteer").exists());
}

#[test]
fn a_file_the_primary_deleted_is_not_brought_back() {
    let t = Tmp::new("deleted");
    let path = t.write("10-kindnet.conflist", KINDNET);
    chain(&t.conf(), &Plugin::default()).unwrap();
    fs::remove_file(&path).unwrap();
    let undone = uninstall(&t.bin(), &t.conf());
    assert!(undone.problems.is_empty(), "{:?}", undone.problems);
    assert!(!path.exists());
    assert!(!t.conf().join(STATE_DIR).exists());
}

/// Every bad input: an error that names the file, and the tree unchanged.
#[test]
fn bad_input_is_refused_by_name_and_changes_nothing() {
    let t = Tmp::new("bad");
    let err = chain(&t.conf(), &Plugin::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no conf file") && err.contains(&t.conf().display().to_string()),
        "{err}"
    );

    let cases: Vec<(&str, &str, &str)> = vec![
        ("10-broken.conflist", "{\"plugins\": [", "not valid JSON"),
        ("10-list.conflist", "[1, 2]", "not a JSON object"),
        (
            "10-plugins.conflist",
            r#"{"name": "x", "plugins": {"type": "ptp"}}"#,
            "\"plugins\" is not a list",
        ),
        ("10-empty.conf", r#"{"name": "x"}"#, "neither a conflist"),
    ];
    for (name, text, why) in cases {
        let t = Tmp::new("bad");
        let path = t.write(name, text);
        let before = t.snapshot();
        let err = chain(&t.conf(), &Plugin::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains(why),
            "{name}: {err}"
        );
        assert_eq!(t.snapshot(), before, "{name}");
    }

    // A plugin object gwsteer's config refuses, named with the file it
    // would have been chained into.
    let t = Tmp::new("bad");
    t.write("10-kindnet.conflist", KINDNET);
    let before = t.snapshot();
    let p = plugin(r#"{"type": "gwsteer", "steering": [{"name": "oam"}]}"#);
    let err = chain(&t.conf(), &p).unwrap_err().to_string();
    assert!(
        err.starts_with("plugin.json: steering[0]") && err.contains("10-kindnet.conflist"),
        "{err}"
    );
    assert_eq!(t.snapshot(), before);
    for text in ["{\"type\": \"bridge\"}", "[]", "{"] {
        let err = Plugin::from_json(text.as_bytes(), "p.json")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.json: "), "{err}");
    }

    // A link is refused (renaming over it would replace it), and so is a
    // --patch path outside the conf dir or a name that is no conf file.
    let t = Tmp::new("bad");
    let elsewhere = t.0.join("kindnet.conflist");
    fs::write(&elsewhere, KINDNET).unwrap();
    std::os::unix::fs::symlink(&elsewhere, t.conf().join("10-kindnet.conflist")).unwrap();
    let before = t.snapshot();
    let err = chain(&t.conf(), &Plugin::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("10-kindnet.conflist is a symbolic link"),
        "{err}"
    );
    let outside = Target::Named(elsewhere.display().to_string());
    let err = patch(&t.conf(), &outside, &Plugin::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a file in the conf dir"), "{err}");
    t.write("10-x.yaml", "{}");
    let err = patch(
        &t.conf(),
        &Target::Named("10-x.yaml".into()),
        &Plugin::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("10-x.yaml: not a .conf, .conflist or .json file"),
        "{err}"
    );
    let err = patch(
        &t.conf(),
        &Target::Named("nope.conflist".into()),
        &Plugin::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("nope.conflist does not exist"), "{err}");
    fs::remove_file(t.conf().join("10-x.yaml")).unwrap();
    assert_eq!(t.snapshot(), before);

    // The record's place taken by a file.
    let t = Tmp::new("bad");
    t.write("10-kindnet.conflist", KINDNET);
    t.write(STATE_DIR, "");
    let err = chain(&t.conf(), &Plugin::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(".gwsteer-install is not a directory"), "{err}");
}

#[test]
fn install_checks_every_input_before_its_first_write() {
    let t = Tmp::new("preflight");
    let bin = t.0.join("gwsteer-src");
    fs::write(&bin, b"new binary").unwrap();
    let mut opts = Options {
        bin: Some(bin.clone()),
        bin_dir: t.bin(),
        conf_dir: t.conf(),
        conflist: None,
        patch: Some(Target::Auto),
        plugin: None,
        uninstall: false,
    };
    // No primary: the binary is not installed either.
    let before = t.snapshot();
    let err = install(&opts).unwrap_err().to_string();
    assert!(err.contains("no conf file"), "{err}");
    assert_eq!(t.snapshot(), before);
    // A conflist that is none.
    t.write("10-kindnet.conflist", KINDNET);
    let bad = t.0.join("99-bad.conflist");
    fs::write(&bad, "{\"name\": \"x\"}").unwrap();
    opts.conflist = Some(bad.clone());
    let before = t.snapshot();
    let err = install(&opts).unwrap_err().to_string();
    assert!(err.contains("99-bad.conflist: not a conflist"), "{err}");
    assert_eq!(t.snapshot(), before);
    // All good: binary, conflist, chain; then again: nothing changes.
    fs::write(
        &bad,
        r#"{"cniVersion": "1.0.0", "name": "extra", "plugins": [{"type": "loopback"}]}"#,
    )
    .unwrap();
    let done = install(&opts).unwrap();
    assert_eq!(done.len(), 3, "{done:?}");
    assert_eq!(fs::read(t.bin().join("gwsteer")).unwrap(), b"new binary");
    assert_eq!(
        fs::metadata(t.bin().join("gwsteer"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    let before = t.snapshot();
    let done = install(&opts).unwrap();
    assert!(
        done[0].ends_with("is up to date") && done[2].ends_with("already chains gwsteer"),
        "{done:?}"
    );
    assert_eq!(t.snapshot(), before);
    // A conflist of someone else's is not overwritten.
    opts.conflist = Some(t.conf().join("10-kindnet.conflist"));
    let err = install(&opts).unwrap_err().to_string();
    assert!(err.contains("exists and is not gwsteer's"), "{err}");
}

#[test]
fn options_parse_like_the_shell_installer() {
    let base = Options {
        bin: None,
        bin_dir: "/opt/cni/bin".into(),
        conf_dir: "/etc/cni/net.d".into(),
        conflist: None,
        patch: None,
        plugin: None,
        uninstall: false,
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let o = super::parse(
        &args(&[
            "--patch",
            "auto",
            "--plugin",
            "/config/plugin.json",
            "--conf-dir",
            "/host/net.d",
        ]),
        base.clone(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(o.patch, Some(Target::Auto));
    assert_eq!(o.plugin.as_deref(), Some(Path::new("/config/plugin.json")));
    assert_eq!(o.conf_dir, Path::new("/host/net.d"));
    assert_eq!(o.bin_dir, Path::new("/opt/cni/bin"));
    let o = super::parse(
        &args(&["--patch", "10-x.conf", "--uninstall"]),
        base.clone(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(o.patch, Some(Target::Named("10-x.conf".into())));
    assert!(o.uninstall);
    assert_eq!(
        super::parse(&args(&["--help"]), base.clone()).unwrap(),
        None
    );
    assert!(
        super::parse(&args(&["--bogus"]), base.clone())
            .unwrap_err()
            .contains("--bogus")
    );
    assert!(
        super::parse(&args(&["--bin"]), base.clone())
            .unwrap_err()
            .contains("--bin needs a file")
    );
}
