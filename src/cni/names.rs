//! Names the CNI protocol carries (network names, container ids, interface
//! names) and what makes one valid.

/// Is `s` a valid CNI network name / container id (`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)?
pub fn valid_cni_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Is `s` usable as a Linux interface name?
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}
