//! Work inside a pod's network namespace that is not netlink: sysctls
//! (forwarding of a router pod) and the router pod's masquerade table.
//!
//! A sysctl is read and written on a short-lived thread that `setns`es into
//! the pod's namespace: `/proc/sys/net` answers for the netns of the task
//! that looks, so the thread sees the pod's values; the caller's thread
//! never changes namespace. `nft` runs as a child that enters the pod's
//! namespace between fork and exec.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};

use crate::error::{Error, Result, code};
use crate::objects::Presence;

fn open_netns(netns: Option<&Path>) -> Result<(File, PathBuf)> {
    let Some(path) = netns else {
        return Err(Error::new(
            code::INVALID_ENV,
            "a pod-side object needs the pod's network namespace (CNI_NETNS), and none was given",
        ));
    };
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::new(
            code::UNKNOWN_CONTAINER,
            format!("network namespace {} does not exist", path.display()),
        ),
        _ => Error::io(
            format_args!("opening network namespace {}", path.display()),
            e,
        ),
    })?;
    Ok((file, path.to_path_buf()))
}

/// Runs `f` on a thread inside the pod's network namespace.
fn in_pod<T: Send + 'static>(
    netns: Option<&Path>,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let (file, path) = open_netns(netns)?;
    std::thread::Builder::new()
        .name("gwsteer-podns".into())
        .spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| match errno {
                Errno::EINVAL => Error::new(
                    code::UNKNOWN_CONTAINER,
                    format!(
                        "network namespace {} is not a network namespace",
                        path.display()
                    ),
                ),
                other => Error::kernel(format!(
                    "entering network namespace {}: {}",
                    path.display(),
                    io::Error::from(other)
                )),
            })?;
            f()
        })
        .map_err(|e| Error::io("starting a thread to enter the pod's network namespace", e))?
        .join()
        .map_err(|_| Error::kernel("the thread inside the pod's network namespace panicked"))?
}

/// A pod sysctl's value.
pub fn read_sysctl(netns: Option<&Path>, key: &str) -> Result<String> {
    let key = key.to_string();
    in_pod(netns, move || crate::sysctl::read(&key)).map_err(|e| e.context("in the pod"))
}

/// Sets a pod sysctl (unless it has the value already).
pub fn write_sysctl(netns: Option<&Path>, key: &str, value: &str) -> Result<()> {
    let (key, value) = (key.to_string(), value.to_string());
    in_pod(netns, move || crate::sysctl::write(&key, &value).map(drop))
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
    crate::firewall::nftables::find_binary("nft").ok_or_else(|| {
        Error::new(
            code::NOT_AVAILABLE,
            "masquerade (router pods, vrf.masquerade) needs nftables: the nft command is not installed (looked in $PATH and the sbin directories)",
        )
    })
}

/// `nft ARGS` with `stdin` in network namespace `netns` (the node's own is
/// given as its `/proc/self/ns/net`); the inner result is nft's stdout, or
/// its complaint on stderr.
pub(crate) fn nft_in(
    netns: Option<&Path>,
    args: &[&str],
    stdin: &str,
) -> Result<std::result::Result<String, String>> {
    let (file, path) = open_netns(netns)?;
    let fd = file.as_raw_fd();
    let mut cmd = Command::new(find_nft()?);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec only setns(2), which is async-signal-safe;
    // `file` outlives the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        Error::io(
            format_args!("running nft in network namespace {}", path.display()),
            e,
        )
    })?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .map_err(|e| Error::io("writing to nft", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("waiting for nft", e))?;
    drop(file);
    Ok(if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    })
}

/// The whole table in one transaction: made, or replaced if it drifted.
pub fn ensure_masquerade(netns: Option<&Path>, ifname: &str) -> Result<()> {
    let table = table_name(ifname);
    // `add table` then `flush table` makes the script idempotent: the
    // table's content is exactly what follows.
    let script = format!(
        "add table inet {table}\n\
         flush table inet {table}\n\
         table inet {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\toifname != \"{ifname}\" masquerade comment \"gwsteer: router pod\"\n\
         \t}}\n\
         }}\n"
    );
    nft_in(netns, &["-f", "-"], &script)?
        .map(drop)
        .map_err(|e| {
            Error::kernel(format!(
                "making nftables table inet {table} in the pod: {e}"
            ))
        })
}

fn list(netns: Option<&Path>, ifname: &str) -> Result<Option<String>> {
    let table = table_name(ifname);
    match nft_in(netns, &["-j", "list", "table", "inet", &table], "")? {
        Ok(out) => Ok(Some(out)),
        Err(e) if e.contains("No such file") => Ok(None),
        Err(e) => Err(Error::kernel(format!(
            "reading nftables table inet {table} in the pod: {e}"
        ))),
    }
}

pub fn remove_masquerade(netns: Option<&Path>, ifname: &str) -> Result<()> {
    if list(netns, ifname)?.is_none() {
        return Ok(());
    }
    let table = table_name(ifname);
    match nft_in(netns, &["delete", "table", "inet", &table], "")? {
        Ok(_) => Ok(()),
        Err(e) if e.contains("No such file") => Ok(()),
        Err(e) => Err(Error::kernel(format!(
            "removing nftables table inet {table} in the pod: {e}"
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
    let rules = json["nftables"].as_array().cloned().unwrap_or_default();
    let found = rules.iter().filter_map(|o| o.get("rule")).any(|rule| {
        let exprs = rule["expr"].as_array().cloned().unwrap_or_default();
        let masq = exprs.iter().any(|e| e.get("masquerade").is_some());
        let out_of = exprs.iter().any(|e| {
            e["match"]["op"] == "!="
                && e["match"]["left"]["meta"]["key"] == "oifname"
                && e["match"]["right"] == ifname
        });
        masq && out_of && rule["chain"] == "postrouting"
    });
    Ok(if found {
        Presence::Present
    } else {
        Presence::Drifted(format!(
            "table inet {} has no masquerade rule for traffic leaving by interfaces other than {ifname}",
            table_name(ifname)
        ))
    })
}
