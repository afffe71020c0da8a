//! Names the CNI protocol carries (network names, container ids, interface
//! names) and what makes one valid — characters and lengths. Every limit
//! here is checked when the name first arrives (config or environment), so
//! nothing longer ever reaches the state store or the kernel.

/// The longest network name (`name` of the conflist), in bytes. The name
/// becomes the state directory `<stateDir>/<network>` (NAME_MAX 255), the
/// nftables table `gwsteer-<network>` (NFT_NAME_MAXLEN 256 with its NUL:
/// 247 left), the comment `gwsteer:<network>` of RETURN rules in foreign
/// iptables chains (255 with its NUL: 247 left), and a node-wide hold file
/// `<network>@sysctl.net.ipv4.conf.<ifname>.accept_local` (255: 205 left).
/// 200 keeps every one of them in bounds with room to spare.
pub const MAX_NETWORK_NAME: usize = 200;

/// The longest container id (`CNI_CONTAINERID`), in bytes. It is part of the
/// record's file name `<id>@<ifname>.json`, which is also set aside as
/// `<id>@<ifname>.json.<seconds>` (NAME_MAX 255: 223 left). Runtimes use 64
/// hexadecimal digits.
pub const MAX_CONTAINER_ID: usize = 200;

/// The longest `stateDir` and `logFile`, in bytes. The deepest path under
/// the state dir is `<stateDir>/<network>/attachments/<record file>`: with
/// PATH_MAX 4096 (with its NUL) that leaves 4096 − 1 − 200 − 13 − 255 − 1
/// = 3626 for the state dir.
pub const MAX_PATH: usize = 3072;

/// The longest interface name (IFNAMSIZ 16 with its NUL).
pub const MAX_IFNAME: usize = 15;

/// Is `s` a valid CNI network name / container id (`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)?
/// (Characters only: the lengths differ, see [`too_long`].)
pub fn valid_cni_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// "is N bytes long; the limit is MAX" when `s` is over `max` bytes.
pub fn too_long(s: &str, max: usize) -> Option<String> {
    (s.len() > max).then(|| format!("is {} bytes long; the limit is {max}", s.len()))
}

/// Why `s` is not a Linux interface name, if it is not one: empty, over 15
/// bytes, `.` or `..`, or holding '/', ':', whitespace or a control
/// character (NUL, newline, …; the kernel takes all but the whitespace, but
/// no tool shows them faithfully).
pub fn ifname_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    if s.len() > MAX_IFNAME {
        return Some(format!(
            "is {} bytes long; an interface name has at most {MAX_IFNAME} (IFNAMSIZ 16 with its NUL)",
            s.len()
        ));
    }
    if s == "." || s == ".." {
        return Some("is not an interface name".into());
    }
    if let Some(c) = s
        .chars()
        .find(|&c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        let shown = match c {
            ' ' => "a space".to_string(),
            c => format!("'{}'", c.escape_debug()),
        };
        return Some(format!("holds {shown}, which an interface name cannot"));
    }
    None
}

/// Is `s` usable as a Linux interface name?
pub fn valid_ifname(s: &str) -> bool {
    ifname_problem(s).is_none()
}

/// Why `s`, a valid interface name, cannot be matched literally by an
/// nftables `iifname`/`oifname` (whose JSON strings are patterns too): a
/// trailing `*` is a wildcard, and `\` is its escape, which nft removes
/// from the whole name when the name ends in `\*`. `+` is literal in nft.
pub fn nft_pattern_problem(s: &str) -> Option<String> {
    if s.contains('*') {
        return Some("holds '*', which nftables reads as a wildcard".into());
    }
    if s.contains('\\') {
        return Some("holds '\\', which nftables reads as an escape".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_linux_names_without_control_characters() {
        for good in ["eth0", "g\"{}$", "eth+", "a.b", "x-y_z", "123456789012345"] {
            assert!(valid_ifname(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "1234567890123456",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\nb",
            "a\0b",
            "a\u{7f}",
        ] {
            assert!(!valid_ifname(bad), "{bad:?}");
        }
        assert_eq!(
            ifname_problem("a\0b").unwrap(),
            "holds '\\0', which an interface name cannot"
        );
        assert_eq!(
            ifname_problem("a b").unwrap(),
            "holds a space, which an interface name cannot"
        );
        assert!(
            ifname_problem("1234567890123456")
                .unwrap()
                .contains("at most 15")
        );
    }

    #[test]
    fn nft_patterns_are_refused_where_names_are_matched() {
        assert!(nft_pattern_problem("eth*").unwrap().contains("wildcard"));
        assert!(nft_pattern_problem("e*t").is_some());
        assert!(nft_pattern_problem("a\\b").unwrap().contains("escape"));
        for literal in ["eth0", "eth+", "g\"{}$"] {
            assert_eq!(nft_pattern_problem(literal), None, "{literal}");
        }
    }

    #[test]
    fn lengths_name_their_limit() {
        assert_eq!(too_long(&"a".repeat(200), MAX_NETWORK_NAME), None);
        assert_eq!(
            too_long(&"a".repeat(201), MAX_NETWORK_NAME).unwrap(),
            "is 201 bytes long; the limit is 200"
        );
    }
}
