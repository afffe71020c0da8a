//! The layers of `src/` and the only directions they may use each other in
//! (README, "Layout"). Reads every `crate::…` path in `src/` — `use`
//! lines, paths in code and doc links alike, in production code (up to a
//! file's first `#[cfg(test)]`) — and fails on an arrow this table does not
//! list, on a top-level module it does not know, and on a pure layer that
//! reaches for the kernel, the file system or a process.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Each top-level module of the crate and the modules it may use.
/// `A: [B, …]` means A may use B. Read from the bottom up: the pure core
/// (model, cni, config, plan), then what does I/O (kernel, facts, store),
/// then what combines them (engine), then the verbs and the operator's
/// commands, then the two entries.
const LAYERS: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("fault", &["error"]),
    ("logging", &["error"]),
    ("model", &["error"]),
    ("cni", &["error", "model"]),
    ("config", &["error", "model", "cni"]),
    ("plan", &["error", "model", "cni", "config"]),
    ("kernel", &["error", "fault", "model"]),
    ("store", &["error", "fault", "model"]),
    (
        "facts",
        &["error", "model", "cni", "config", "plan", "kernel"],
    ),
    (
        "engine",
        &[
            "error", "fault", "logging", "model", "cni", "config", "plan", "kernel", "store",
            "facts",
        ],
    ),
    (
        "verbs",
        &[
            "error", "fault", "logging", "model", "cni", "config", "plan", "kernel", "store",
            "facts", "engine",
        ],
    ),
    (
        "ops",
        &[
            "error", "fault", "logging", "model", "cni", "config", "plan", "kernel", "store",
            "facts", "engine",
        ],
    ),
    (
        "cli",
        &[
            "error", "logging", "model", "cni", "config", "engine", "ops",
        ],
    ),
    (
        "entry",
        &["error", "logging", "model", "cni", "config", "verbs"],
    ),
];

/// Layers that are pure functions of their input: no kernel, no files, no
/// processes, no clock-dependent I/O beyond what `std` gives every value.
const PURE: &[&str] = &["model", "cni", "config", "plan"];

/// What a pure layer must not name.
const IMPURE: &[&str] = &[
    "libc::",
    "nix::",
    "netlink_packet",
    "netlink_sys",
    "std::fs",
    "std::process",
    "std::os::",
    "std::net::UdpSocket",
    "std::net::TcpStream",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`plan/gateway.rs` → `plan`);
/// `None` for the crate roots.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src/");
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.as_str() {
        "lib.rs" | "main.rs" => None,
        name => Some(name.trim_end_matches(".rs").to_string()),
    }
}

/// Production text: everything before the first `#[cfg(test)]`.
fn production(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or("")
}

/// Top-level modules named by `crate::x` paths and `crate::{x, y::z}` groups.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name = ident(after);
            if !name.is_empty() {
                found.insert(name);
            }
        }
        rest = after;
    }
    found
}

/// Every arrow (from, to, file) among top-level modules in `src`.
fn arrows(src: &Path) -> (BTreeSet<String>, Vec<(String, String, PathBuf)>) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let tops: BTreeSet<String> = files.iter().filter_map(|f| top_module(src, f)).collect();
    let mut out = Vec::new();
    for file in &files {
        let Some(from) = top_module(src, file) else {
            continue;
        };
        let text = fs::read_to_string(file).expect("readable source");
        for to in crate_paths(production(&text)) {
            if to != from && tops.contains(&to) {
                out.push((from.clone(), to, file.clone()));
            }
        }
    }
    (tops, out)
}

fn violations(src: &Path) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let (tops, arrows) = arrows(src);
    let mut problems = Vec::new();
    for top in &tops {
        if !allowed.contains_key(top.as_str()) {
            problems.push(format!(
                "src/{top}: a top-level module the layer table does not know; put it in a layer"
            ));
        }
    }
    for (from, to, file) in &arrows {
        if let Some(ok) = allowed.get(from.as_str())
            && !ok.contains(&to.as_str())
        {
            problems.push(format!(
                "{}: {from} uses {to}, which the layer table does not allow",
                file.strip_prefix(src).unwrap_or(file).display()
            ));
        }
    }
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    for file in &files {
        let Some(top) = top_module(src, file) else {
            continue;
        };
        if !PURE.contains(&top.as_str()) {
            continue;
        }
        let text = fs::read_to_string(file).expect("readable source");
        for bad in IMPURE {
            if production(&text).contains(bad) {
                problems.push(format!(
                    "{}: {top} is pure but names {bad}",
                    file.strip_prefix(src).unwrap_or(file).display()
                ));
            }
        }
    }
    problems
}

#[test]
fn every_arrow_between_layers_is_allowed() {
    let problems = violations(&src());
    assert!(
        problems.is_empty(),
        "the layout has arrows the layer table forbids:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_table_has_no_cycle() {
    // A layer table that allowed A → B and B → A would let a cycle in.
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    fn reaches(
        allowed: &BTreeMap<&str, &[&str]>,
        from: &str,
        to: &str,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        allowed
            .get(from)
            .into_iter()
            .flat_map(|v| v.iter())
            .any(|n| *n == to || (seen.insert(n.to_string()) && reaches(allowed, n, to, seen)))
    }
    for (module, _) in LAYERS {
        assert!(
            !reaches(&allowed, module, module, &mut BTreeSet::new()),
            "{module} can reach itself through the layer table"
        );
    }
}

/// The checker itself: a forbidden import, a new unknown module and an
/// impure pure layer are each caught (so the test above can fail).
#[test]
fn the_checker_catches_what_it_must() {
    let dir = std::env::temp_dir().join(format!("gwsteer-arch-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let write = |rel: &str, text: &str| {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod model;\npub mod plan;\npub mod engine;\n");
    write("model/mod.rs", "use crate::error::Result;\n");
    write("error.rs", "");
    write(
        "plan/mod.rs",
        "use crate::model::Object;\nuse crate::{config, cni::Env};\n#[cfg(test)]\nuse crate::engine;\n",
    );
    write("config/mod.rs", "");
    write("cni/mod.rs", "");
    write("engine/mod.rs", "use crate::plan;\n");
    assert_eq!(violations(&dir), Vec::<String>::new(), "a clean tree");

    // plan → engine outside tests: the layer table forbids it.
    write(
        "plan/steering.rs",
        "/// See [`crate::engine::apply`].\npub fn f() {}\n",
    );
    let found = violations(&dir);
    assert_eq!(
        found,
        vec!["plan/steering.rs: plan uses engine, which the layer table does not allow"]
    );
    fs::remove_file(dir.join("plan/steering.rs")).unwrap();

    // A group import counts too.
    write("model/rule.rs", "use crate::{error, store::Store};\n");
    write("store.rs", "");
    assert_eq!(
        violations(&dir),
        vec!["model/rule.rs: model uses store, which the layer table does not allow"]
    );
    fs::remove_file(dir.join("model/rule.rs")).unwrap();

    // An unknown top-level module, and a pure layer doing I/O.
    write("helpers.rs", "");
    write(
        "config/read.rs",
        "pub fn f() { let _ = std::fs::read(\"/x\"); }\n",
    );
    let found = violations(&dir);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("src/helpers: a top-level module")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p == "config/read.rs: config is pure but names std::fs"),
        "{found:?}"
    );
    let _ = fs::remove_dir_all(&dir);
}
