//! The functions a CNI call runs (`.cargo/hot-symbols.txt`) lead the release
//! binary's code (README "A static binary"; `.cargo/ordered-cc`): a fresh
//! process then faults in a few 64 KiB windows of code instead of dozens.
//! The list names functions by their mangled symbols, whose hash suffix
//! changes with a dependency's features or the toolchain; the linker
//! wrapper matches such a name by the part before the hash. Without that,
//! a list made before such a change silently lost half its functions.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;

/// `_ZN…17h<16 hex>E` without its hash: the name the hash belongs to.
fn stem(name: &str) -> &str {
    let b = name.as_bytes();
    if b.len() > 20
        && name.ends_with('E')
        && &b[b.len() - 20..b.len() - 17] == b"17h"
        && b[b.len() - 17..b.len() - 1]
            .iter()
            .all(u8::is_ascii_hexdigit)
    {
        &name[..name.len() - 20]
    } else {
        name
    }
}

/// `(name, address, size)` of the binary's functions, by address.
fn functions(bin: &str) -> Vec<(String, u64, u64)> {
    let out = Command::new("nm")
        .args(["--defined-only", "-P", "-S", bin])
        .output()
        .unwrap_or_else(|e| panic!("nm: {e} (binutils)"));
    assert!(out.status.success(), "nm {bin}: {out:?}");
    let mut funcs: Vec<(String, u64, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (name, kind, addr) = (f.next()?, f.next()?, f.next()?);
            let size = f
                .next()
                .map_or(Some(0), |s| u64::from_str_radix(s, 16).ok())?;
            matches!(kind, "t" | "T" | "W" | "w")
                .then(|| Some((name.to_string(), u64::from_str_radix(addr, 16).ok()?, size)))?
        })
        .filter(|(_, _, size)| *size > 0)
        .collect();
    funcs.sort_by_key(|(_, addr, _)| *addr);
    funcs
}

fn release_binary() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let bin = target.join("release/gwsteer");
    bin.exists().then_some(bin)
}

#[test]
fn the_functions_a_call_runs_lead_the_release_binarys_code() {
    let Some(bin) = release_binary() else {
        eprintln!(
            "skipped: no target/release/gwsteer (cargo build --release; tests/run-all.sh does)"
        );
        return;
    };
    let bin = bin.display().to_string();
    let list_path = concat!(env!("CARGO_MANIFEST_DIR"), "/.cargo/hot-symbols.txt");
    let list = std::fs::read_to_string(list_path).expect(list_path);
    let stems: HashSet<&str> = list.lines().map(stem).collect();

    let funcs = functions(&bin);
    // A listed symbol the binary has is that function; a listed name whose
    // hash moved stands for every instance of the name (as the linker
    // wrapper orders them).
    let exact: HashSet<&str> = list.lines().collect();
    let kept: HashSet<&str> = funcs
        .iter()
        .map(|(name, _, _)| name.as_str())
        .filter(|name| exact.contains(name))
        .map(stem)
        .collect();
    let hot: Vec<usize> = (0..funcs.len())
        .filter(|&i| {
            let name = funcs[i].0.as_str();
            exact.contains(name) || (stems.contains(stem(name)) && !kept.contains(stem(name)))
        })
        .collect();
    let present: HashSet<&str> = hot.iter().map(|&i| stem(&funcs[i].0)).collect();
    // A list that lost most of its names to renamed or inlined code must be
    // made again (benches/hot-symbols.sh), not carried along.
    assert!(
        present.len() * 10 >= stems.len() * 8,
        "{bin} has only {} of the {} functions in {list_path}: make the list again \
         (sudo benches/hot-symbols.sh, then rebuild)",
        present.len(),
        stems.len()
    );
    // They come first: few other functions lie among them. Rust code only:
    // each Rust function has a section of its own, which the linker places
    // by itself, while a listed glibc function brings the rest of its
    // object file's code along.
    let last = *hot.last().expect("hot functions");
    let hot_set: HashSet<usize> = hot.iter().copied().collect();
    let mut strangers: HashMap<&str, u64> = HashMap::new();
    for (i, (name, _, size)) in funcs.iter().enumerate().take(last) {
        if !hot_set.contains(&i) && (name.starts_with("_ZN") || name.starts_with("_R")) {
            strangers.insert(name, *size);
        }
    }
    let hot_bytes: u64 = hot.iter().map(|&i| funcs[i].2).sum();
    let stranger_bytes: u64 = strangers.values().sum();
    assert!(
        stranger_bytes * 10 <= hot_bytes,
        "{bin}: {} other functions ({stranger_bytes} bytes) lie among the {} listed ones \
         ({hot_bytes} bytes), e.g. {:?}: the linker did not order them (.cargo/ordered-cc)",
        strangers.len(),
        hot.len(),
        strangers.keys().take(5).collect::<Vec<_>>()
    );
}

#[test]
fn a_symbol_hash_is_told_from_the_name() {
    assert_eq!(
        stem("_ZN10serde_json2de10from_trait17h008f9d283bf41d9bE"),
        "_ZN10serde_json2de10from_trait"
    );
    assert_eq!(stem("__libc_start_main_impl"), "__libc_start_main_impl");
    assert_eq!(
        stem("_ZN4core3fmt5write17hxyzE"),
        "_ZN4core3fmt5write17hxyzE"
    );
}
