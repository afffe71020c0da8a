//! The Go driver over Debian's libcni (`tests/libcni-driver`): the library that
//! containerd, CRI-O and podman use to run a conflist (up to cniVersion 1.0.0).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use super::cni::{CniOutcome, cni_path, run_captured};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                manifest_dir().join(p)
            }
        })
        .unwrap_or_else(|| manifest_dir().join("target"))
}

fn mtime(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Names a driver binary built beforehand; then nothing is built. The VRF
/// guest (`tests/vrf/run.sh`) sets it: the guest sees this machine's files
/// read-only and has no CARGO_TARGET_DIR, so it can neither build nor find
/// the driver by itself.
pub const DRIVER_ENV: &str = "GWSTEER_LIBCNI_DRIVER";

/// Path of the driver binary: [`DRIVER_ENV`] if set, else built once per test
/// process with `tests/libcni-driver/build.sh target/libcni-driver` unless it
/// is newer than its sources. A file lock keeps parallel test processes
/// (nextest) from building at the same time.
pub fn libcni_driver() -> PathBuf {
    static DRIVER: OnceLock<PathBuf> = OnceLock::new();
    DRIVER
        .get_or_init(|| match std::env::var_os(DRIVER_ENV) {
            Some(path) => {
                let bin = PathBuf::from(path);
                assert!(
                    bin.is_file(),
                    "{DRIVER_ENV}={} is not a file (build it with tests/libcni-driver/build.sh)",
                    bin.display()
                );
                bin
            }
            None => build_driver(),
        })
        .clone()
}

fn build_driver() -> PathBuf {
    let src_dir = manifest_dir().join("tests/libcni-driver");
    let out_dir = target_dir().join("libcni-driver");
    let bin = out_dir.join("libcni-driver");
    fs::create_dir_all(&out_dir).unwrap_or_else(|e| panic!("create {}: {e}", out_dir.display()));
    let lock_path = out_dir.join(".build.lock");
    let lock = File::create(&lock_path).unwrap_or_else(|e| panic!("{}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));

    let newest_source = ["main.go", "build.sh"]
        .iter()
        .filter_map(|f| mtime(&src_dir.join(f)))
        .max();
    let fresh = match (mtime(&bin), newest_source) {
        (Some(b), Some(s)) => b > s,
        _ => false,
    };
    if !fresh {
        let out = Command::new("bash")
            .arg(src_dir.join("build.sh"))
            .arg(&out_dir)
            .current_dir(manifest_dir())
            .output()
            .unwrap_or_else(|e| panic!("run build.sh: {e}"));
        assert!(
            out.status.success(),
            "building the libcni driver failed (is golang-go and golang-github-appc-cni-dev \
             installed? see install/deps.sh):\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = lock.unlock();
    assert!(bin.is_file(), "{} missing after build", bin.display());
    bin
}

/// Runs `libcni-driver <op> <conflist> <netns> <container-id> <ifname> [cni-args]`
/// inside `node_ns` with `CNI_PATH` = [`cni_path`] and `CNI_CACHE_DIR` =
/// `cache_dir` (per test). `op`: `add` (stdout: the result JSON), `check`,
/// `del`, `cached` (stdout: libcni's cached ADD result). On a CNI error the
/// driver prints the error JSON on stdout, so [`CniOutcome::error_code`] works.
#[allow(clippy::too_many_arguments)]
pub fn libcni(
    node_ns: &str,
    op: &str,
    conflist_path: &Path,
    netns_path: &str,
    container_id: &str,
    ifname: &str,
    cni_args: Option<&str>,
    cache_dir: &Path,
) -> CniOutcome {
    let driver = libcni_driver();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", node_ns])
        .arg(&driver)
        .arg(op)
        .arg(conflist_path)
        .arg(netns_path)
        .arg(container_id)
        .arg(ifname);
    if let Some(args) = cni_args {
        cmd.arg(args);
    }
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("CNI_PATH", cni_path())
        .env("CNI_CACHE_DIR", cache_dir);
    run_captured(cmd, Vec::new(), Duration::from_secs(180))
}
