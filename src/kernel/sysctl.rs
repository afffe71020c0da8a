//! Sysctls under /proc/sys of the namespace gwsteer runs in (the node's).
//! Read before written, and written only when different.

use std::fs;
use std::path::PathBuf;

use crate::error::{Error, Result, code};

fn path(key: &str) -> Result<PathBuf> {
    if key.is_empty()
        || key.contains("..")
        || key.contains('/')
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(Error::new(
            code::KERNEL,
            format!("\"{key}\" is not a sysctl name"),
        ));
    }
    Ok(PathBuf::from("/proc/sys").join(key.replace('.', "/")))
}

pub fn read(key: &str) -> Result<String> {
    let p = path(key)?;
    fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::new(code::KERNEL, format!("reading sysctl {key}: {e}")))
}

/// Set `key` to `value` unless it already is; returns the previous value.
pub fn write(key: &str, value: &str) -> Result<String> {
    let before = read(key)?;
    if before != value {
        fs::write(path(key)?, value).map_err(|e| {
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
    fn names_are_checked() {
        assert!(path("net.ipv4.conf.all.src_valid_mark").is_ok());
        assert_eq!(
            path("net.ipv4.conf.eth-b.rp_filter").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth-b/rp_filter")
        );
        for bad in ["", "../etc", "net/ipv4", "net.ipv4 x"] {
            assert!(path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_a_real_sysctl() {
        assert!(read("net.ipv4.ip_forward").is_ok());
    }
}
