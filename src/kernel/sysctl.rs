//! Sysctls under /proc/sys of the namespace gwsteer runs in (the node's, or
//! a pod's when called inside it). Read before written, and written only
//! when different.
//!
//! Only the sysctls gwsteer itself plans can be read or written, whatever
//! asks: a key or value that comes from a state file (a node group's
//! objects, the value it restores) is never trusted to name a path or to
//! carry more than a number, so a forged file cannot make gwsteer write
//! `kernel.core_pattern`.

use std::fs;
use std::path::PathBuf;

use crate::error::{Error, Result, code};

/// Every fixed sysctl a planner makes: `src_valid_mark` (mark/connmark
/// policies), `fib_multipath_use_neigh` (multipath gateways), and a router
/// pod's forwarding.
pub const FIXED: &[&str] = &[
    "net.ipv4.conf.all.src_valid_mark",
    "net.ipv4.fib_multipath_use_neigh",
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
];

/// The one per-interface family: `net.ipv4.conf.<ifname>.accept_local` (the
/// VRF leg). The interface name may hold dots (`eth0.100`): everything
/// between the prefix and the suffix is the name.
const PER_IF: (&str, &str) = ("net.ipv4.conf.", ".accept_local");

/// The longest value gwsteer writes or puts back: a decimal integer.
const MAX_VALUE_DIGITS: usize = 10;

/// A Linux interface name, as a path component under `conf/`.
fn interface_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// The /proc/sys path of `key`, if it is one gwsteer sets.
fn path(key: &str) -> Result<PathBuf> {
    if FIXED.contains(&key) {
        return Ok(PathBuf::from("/proc/sys").join(key.replace('.', "/")));
    }
    if let Some(dev) = key
        .strip_prefix(PER_IF.0)
        .and_then(|rest| rest.strip_suffix(PER_IF.1))
        .filter(|dev| interface_name(dev))
    {
        return Ok(PathBuf::from("/proc/sys/net/ipv4/conf")
            .join(dev)
            .join("accept_local"));
    }
    Err(Error::new(
        code::KERNEL,
        format!(
            "sysctl {key:?} is not one gwsteer sets ({}, {}<interface>{}): refused",
            FIXED.join(", "),
            PER_IF.0,
            PER_IF.1
        ),
    ))
}

/// Is `value` a short decimal integer?
fn plain_number(value: &str) -> bool {
    let digits = value.strip_prefix('-').unwrap_or(value);
    !digits.is_empty()
        && digits.len() <= MAX_VALUE_DIGITS
        && digits.bytes().all(|b| b.is_ascii_digit())
}

pub fn read(key: &str) -> Result<String> {
    let p = path(key)?;
    fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::new(code::KERNEL, format!("reading sysctl {key}: {e}")))
}

/// Set `key` to `value` unless it already is; returns the previous value.
pub fn write(key: &str, value: &str) -> Result<String> {
    let p = path(key)?;
    if !plain_number(value) {
        return Err(Error::new(
            code::KERNEL,
            format!(
                "sysctl {key}: {value:?} is not a decimal integer of at most {MAX_VALUE_DIGITS} digits: refused"
            ),
        ));
    }
    let before = read(key)?;
    if before != value {
        fs::write(p, value).map_err(|e| {
            Error::new(code::KERNEL, format!("setting sysctl {key} = {value}: {e}"))
        })?;
        log::debug!("sysctl {key}: {before} -> {value}");
    }
    Ok(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sysctls_gwsteer_plans_have_a_path() {
        for key in FIXED {
            assert_eq!(
                path(key).unwrap(),
                PathBuf::from("/proc/sys").join(key.replace('.', "/"))
            );
        }
        assert_eq!(
            path("net.ipv4.conf.gl-vrf.accept_local").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/gl-vrf/accept_local")
        );
        // A VLAN-style name with a dot is one path component.
        assert_eq!(
            path("net.ipv4.conf.eth0.100.accept_local").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/accept_local")
        );
        for bad in [
            "",
            "kernel.core_pattern",
            "kernel.modprobe",
            "net.ipv4.conf.eth-b.rp_filter",
            "net.ipv4.conf.all.accept_local.x",
            "net.ipv4.conf..accept_local",
            "net.ipv4.conf.0123456789abcdef.accept_local",
            "net.ipv4.conf.a\nb.accept_local",
            "net/ipv4/ip_forward",
            "net.ipv4.ip_forward ",
            "../../etc/passwd",
        ] {
            let e = path(bad).unwrap_err();
            assert!(
                e.msg
                    .starts_with(&format!("sysctl {bad:?} is not one gwsteer sets")),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn only_short_numbers_are_written() {
        for good in ["0", "1", "2", "-1", "4294967295"] {
            assert!(plain_number(good), "{good}");
        }
        for bad in [
            "",
            "-",
            "1 ",
            " 1",
            "1\n",
            "0x1",
            "|/tmp/x %p",
            "12345678901",
            "1;2",
        ] {
            assert!(!plain_number(bad), "{bad:?}");
        }
        // Refused before anything is read or written.
        let e = write("net.ipv4.ip_forward", "|/tmp/x").unwrap_err();
        assert!(e.msg.contains("is not a decimal integer"), "{e}");
        let e = write("kernel.core_pattern", "1").unwrap_err();
        assert!(
            e.msg
                .contains("\"kernel.core_pattern\" is not one gwsteer sets"),
            "{e}"
        );
        let e = read("kernel.core_pattern").unwrap_err();
        assert!(e.msg.contains("is not one gwsteer sets"), "{e}");
    }

    #[test]
    fn reads_a_real_sysctl() {
        assert!(read("net.ipv4.ip_forward").is_ok());
    }
}
