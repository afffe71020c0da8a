//! Debian's podman as a real container runtime (TESTING.md): its CNI backend
//! with runc, a private `containers.conf` and `storage.conf` (vfs) under the
//! lab's temp dir, images made locally (`podman import` of a busybox-static
//! rootfs, `podman build` of a FROM-scratch Containerfile), and podman run
//! inside a node namespace entered with `nsenter --net=` (not `ip netns
//! exec`, which remounts /sys). Every container and image is removed on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::cni::{CniOutcome, run_captured};
use super::lab::Lab;

pub struct Podman {
    node: String,
    conf: PathBuf,
    storage_conf: PathBuf,
    storage: PathBuf,
}

/// podman, buildah and runc are installed (install/deps.sh installs them).
pub fn podman_installed() -> bool {
    ["podman", "runc"].iter().all(|c| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

impl Podman {
    /// podman for containers in node namespace `node`, its CNI networks in
    /// `conf_dir`, plugins from `plugin_dirs`.
    pub fn new(lab: &Lab, node: &str, conf_dir: &Path, plugin_dirs: &[&Path]) -> Podman {
        assert!(
            podman_installed(),
            "podman and runc are needed (bash install/deps.sh installs them)"
        );
        let dir = lab.subdir("podman");
        let storage = dir.join("storage");
        fs::create_dir_all(&storage).unwrap();
        let dirs: Vec<String> = plugin_dirs
            .iter()
            .map(|d| format!("{:?}", d.display().to_string()))
            .collect();
        let conf = dir.join("containers.conf");
        fs::write(
            &conf,
            format!(
                "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [{}]\nnetwork_config_dir = {:?}\n\
                 [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 [containers]\ndefault_ulimits = []\n",
                dirs.join(", "),
                conf_dir.display().to_string()
            ),
        )
        .unwrap();
        let storage_conf = dir.join("storage.conf");
        fs::write(
            &storage_conf,
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = {:?}\nrunroot = {:?}\n",
                storage.join("root").display().to_string(),
                storage.join("run").display().to_string()
            ),
        )
        .unwrap();
        Podman {
            node: node.to_string(),
            conf,
            storage_conf,
            storage,
        }
    }

    /// `podman ARGS` inside the node namespace.
    pub fn run(&self, args: &[&str]) -> CniOutcome {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.node))
            .arg("podman")
            .args(args)
            .env("CONTAINERS_CONF", &self.conf)
            .env("CONTAINERS_STORAGE_CONF", &self.storage_conf);
        run_captured(cmd, Vec::new(), Duration::from_secs(180))
    }

    /// Like [`Podman::run`], panicking with podman's output on failure;
    /// stdout trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.success(), "podman {}:\n{out}", args.join(" "));
        out.stdout_raw.trim().to_string()
    }

    /// An image `tag` whose root holds Debian's static busybox as /bin/*.
    pub fn import_busybox(&self, lab: &Lab, tag: &str) {
        let root = lab.subdir("busybox-root");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::copy("/usr/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
        for applet in ["sh", "sleep", "nc", "echo", "cat", "ip"] {
            let link = root.join("bin").join(applet);
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
        let tar = lab.tmpdir().join("busybox.tar");
        let out = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        self.ok(&["import", tar.to_str().unwrap(), tag]);
    }

    /// The address of container `name` on network `network`.
    pub fn ip_of(&self, name: &str, network: &str) -> String {
        self.ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
            name,
        ])
    }

    /// The path of container `name`'s network namespace.
    pub fn netns_of(&self, name: &str) -> String {
        self.ok(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", name])
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-af", "-t", "0"]);
        let _ = self.run(&["rmi", "-af"]);
        let _ = fs::remove_dir_all(&self.storage);
    }
}
