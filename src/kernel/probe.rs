//! What the running kernel can do, for config sections that need more than the
//! basics (today: `vrf`, which needs `CONFIG_NET_VRF`).
//!
//! The checks read files only; they never load a module or touch a network
//! namespace, so they are cheap enough for every ADD. A VRF module that is
//! installed but not loaded counts as support: the kernel loads it itself
//! (`request_module("rtnl-link-vrf")`) when the first VRF device is created.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, code};

/// Whether the running kernel can create VRF devices (`CONFIG_NET_VRF`).
///
/// True when any of these holds, checked in this order:
/// - `/sys/module/vrf` exists: the module is loaded (or built in);
/// - `/proc/modules` lists `vrf` (loaded);
/// - `/lib/modules/<release>/modules.builtin` lists `vrf.ko` (built in);
/// - `/lib/modules/<release>/modules.dep` lists `vrf.ko` (installed, loadable on
///   demand) and module loading is not disabled (`kernel.modules_disabled`).
///
/// It does not run `modprobe`: loading is left to the kernel at first use.
pub fn vrf_supported() -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_default();
    let modules_disabled =
        fs::read_to_string("/proc/sys/kernel/modules_disabled").is_ok_and(|v| v.trim() == "1");
    let module_dirs: Vec<PathBuf> = if release.is_empty() {
        Vec::new()
    } else {
        vec![
            Path::new("/lib/modules").join(&release),
            Path::new("/usr/lib/modules").join(&release),
        ]
    };
    vrf_supported_in(&Probe {
        sys_module: Path::new("/sys/module"),
        proc_modules: Path::new("/proc/modules"),
        module_dirs: &module_dirs,
        modules_disabled,
    })
}

/// [`vrf_supported`], or error 103 (`KERNEL_FEATURE`) naming the missing kernel option.
pub fn require_vrf() -> Result<()> {
    if vrf_supported() {
        return Ok(());
    }
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    Err(Error::new(
        code::KERNEL_FEATURE,
        "the kernel has no VRF support (CONFIG_NET_VRF); the `vrf` section needs a kernel \
         built with CONFIG_NET_VRF=y, or =m with the vrf module installed",
    )
    .with_details(format!(
        "kernel {release}: vrf is not loaded (/sys/module/vrf, /proc/modules), not built in \
         (modules.builtin) and not installed as a loadable module (modules.dep)"
    )))
}

/// Where [`vrf_supported`] looks; separate so tests can point it at fixtures.
struct Probe<'a> {
    sys_module: &'a Path,
    proc_modules: &'a Path,
    /// `/lib/modules/<release>` and its aliases; the first that has the files wins.
    module_dirs: &'a [PathBuf],
    modules_disabled: bool,
}

fn vrf_supported_in(p: &Probe) -> bool {
    if p.sys_module.join("vrf").exists() {
        return true;
    }
    if fs::read_to_string(p.proc_modules).is_ok_and(|text| {
        text.lines()
            .any(|l| l.split_whitespace().next() == Some("vrf"))
    }) {
        return true;
    }
    for dir in p.module_dirs {
        if lists_vrf(&dir.join("modules.builtin")) {
            return true;
        }
        if !p.modules_disabled && lists_vrf(&dir.join("modules.dep")) {
            return true;
        }
    }
    false
}

/// Whether a `modules.builtin` / `modules.dep` file names the vrf module
/// (`kernel/drivers/net/vrf.ko`, possibly compressed: `.ko.xz`, `.ko.zst`, …).
fn lists_vrf(file: &Path) -> bool {
    let Ok(text) = fs::read_to_string(file) else {
        return false;
    };
    text.lines().any(|line| {
        let path = line.split(':').next().unwrap_or("").trim();
        let name = path.rsplit('/').next().unwrap_or("");
        name == "vrf.ko"
            || name
                .strip_prefix("vrf.ko.")
                .is_some_and(|ext| !ext.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    struct Fixture {
        root: PathBuf,
    }

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let root =
                std::env::temp_dir().join(format!("gwsteer-kernel-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("sys/module")).unwrap();
            fs::create_dir_all(root.join("lib/modules/6.1.0-test")).unwrap();
            Fixture { root }
        }

        fn write(&self, rel: &str, text: &str) -> &Fixture {
            let path = self.root.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
            self
        }

        fn supported(&self, modules_disabled: bool) -> bool {
            let dirs = vec![
                self.root.join("lib/modules/6.1.0-test"),
                self.root.join("usr/lib/modules/6.1.0-test"),
            ];
            vrf_supported_in(&Probe {
                sys_module: &self.root.join("sys/module"),
                proc_modules: &self.root.join("proc/modules"),
                module_dirs: &dirs,
                modules_disabled,
            })
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    const DEP_WITHOUT_VRF: &str = "kernel/drivers/net/veth.ko:\n\
        kernel/drivers/net/vrfx.ko:\n\
        kernel/net/ipv4/udp_tunnel.ko:\n";

    #[test]
    fn nothing_means_no_vrf() {
        let f = Fixture::new("none");
        f.write("lib/modules/6.1.0-test/modules.dep", DEP_WITHOUT_VRF)
            .write(
                "lib/modules/6.1.0-test/modules.builtin",
                "kernel/net/ipv4/tcp_cubic.ko\n",
            )
            .write("proc/modules", "veth 40960 0 - Live 0x0\n");
        assert!(!f.supported(false));
    }

    #[test]
    fn loaded_module_counts() {
        let f = Fixture::new("loaded");
        fs::create_dir_all(f.root.join("sys/module/vrf")).unwrap();
        assert!(f.supported(true));
        let g = Fixture::new("procmod");
        g.write(
            "proc/modules",
            "veth 40960 0 - Live 0x0\nvrf 36864 0 - Live 0x0\n",
        );
        assert!(g.supported(true));
    }

    #[test]
    fn builtin_counts_even_with_module_loading_disabled() {
        let f = Fixture::new("builtin");
        f.write(
            "lib/modules/6.1.0-test/modules.builtin",
            "kernel/net/ipv4/tcp_cubic.ko\nkernel/drivers/net/vrf.ko\n",
        );
        assert!(f.supported(true));
    }

    #[test]
    fn installed_module_counts_unless_loading_is_disabled() {
        for (ext, rel) in [
            ("", "lib/modules/6.1.0-test/modules.dep"),
            (".xz", "lib/modules/6.1.0-test/modules.dep"),
            (".zst", "usr/lib/modules/6.1.0-test/modules.dep"),
        ] {
            let f = Fixture::new(&format!("dep{}", ext.trim_start_matches('.')));
            f.write(
                rel,
                &format!("{DEP_WITHOUT_VRF}kernel/drivers/net/vrf.ko{ext}:\n"),
            );
            assert!(f.supported(false), "vrf.ko{ext} in {rel}");
            assert!(!f.supported(true), "vrf.ko{ext} with modules_disabled");
        }
    }

    /// Ground truth: can a VRF device be made in a throwaway network namespace?
    /// `None` when that cannot be tried (not root, no `unshare`/`ip`).
    fn kernel_makes_vrf() -> Option<bool> {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        let out = Command::new("unshare")
            .args([
                "--net",
                "ip",
                "link",
                "add",
                "gwsvrfprobe",
                "type",
                "vrf",
                "table",
                "10",
            ])
            .output()
            .ok()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Some(true)
        } else if stderr.contains("Unknown device type") || stderr.contains("not supported") {
            Some(false)
        } else {
            // Something else went wrong (no ip, no unshare): no verdict.
            eprintln!("vrf probe inconclusive: {stderr}");
            None
        }
    }

    /// On this project's host kernel (no CONFIG_NET_VRF) both say no; in the
    /// VRF guest (tests/vrf) both say yes.
    #[test]
    fn agrees_with_the_running_kernel() {
        let detected = vrf_supported();
        match kernel_makes_vrf() {
            Some(truth) => assert_eq!(
                detected,
                truth,
                "vrf_supported() = {detected}, but creating a VRF device {}",
                if truth { "works" } else { "fails" }
            ),
            None => eprintln!("skipped the kernel comparison (needs root, unshare and ip)"),
        }
        match require_vrf() {
            Ok(()) => assert!(detected),
            Err(e) => {
                assert!(!detected);
                assert_eq!(e.code, code::KERNEL_FEATURE);
                assert!(
                    e.msg
                        .starts_with("the kernel has no VRF support (CONFIG_NET_VRF)"),
                    "{e}"
                );
            }
        }
    }
}

/// `major.minor` of a kernel release string (`6.18.44-fc-v1147` → (6, 18)).
pub fn release_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Can an existing nf_tables set element's timeout be updated (Linux
/// 6.10, "set element timeout update support")? Before that, an add of an
/// element that is there changes nothing, silently: an expiry given to a
/// pod's element would never take effect. Read once per process.
pub fn element_timeout_updates() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|r| release_version(&r))
            .is_some_and(|v| v >= (6, 10))
    })
}

#[cfg(test)]
mod release_tests {
    use super::*;

    #[test]
    fn release_versions_compare_as_numbers() {
        assert_eq!(release_version("6.18.44-fc-v1147"), Some((6, 18)));
        assert_eq!(release_version("6.1.0-28-amd64\n"), Some((6, 1)));
        assert_eq!(release_version("6.10"), Some((6, 10)));
        assert_eq!(release_version("garbage"), None);
        assert!(release_version("6.9.12").unwrap() < (6, 10));
        assert!(release_version("6.10.0").unwrap() >= (6, 10));
        assert!(release_version("7.0.1").unwrap() >= (6, 10));
    }
}
