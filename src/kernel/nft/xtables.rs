//! What the exemption's RETURN rules in foreign iptables chains need to
//! know about the iptables command line: its two variants, their binaries,
//! which legacy tables a namespace has, the words of a rule as `*-save` and
//! `-S` print it, and the marks gwsteer leaves on its rules (and left on the
//! chains of its retired iptables backend).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::model::Family;

/// Every iptables rule gwsteer makes carries `--comment gwsteer:…`.
pub const COMMENT_PREFIX: &str = "gwsteer:";
/// The chains of gwsteer's retired iptables backend were named `GWS-…`:
/// cleanup leaves the jumps to them alone, as it cannot remove the chains.
pub const CHAIN_PREFIX: &str = "GWS-";
/// How long an iptables command waits for the xtables lock, in seconds
/// (legacy; nft ignores it).
pub const LOCK_WAIT_SECS: &str = "10";

/// The two implementations behind the `iptables` command line.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Variant {
    /// `ip_tables` in the kernel, rules swapped as whole tables.
    Legacy,
    /// nf_tables in the kernel, driven through the xtables compatibility layer.
    Nft,
}

impl Variant {
    pub const ALL: [Variant; 2] = [Variant::Legacy, Variant::Nft];

    /// `iptables-nft`, `ip6tables-legacy`: the variant's command for a
    /// family (and how messages name it).
    pub fn command(self, family: Family) -> &'static str {
        match (self, family) {
            (Variant::Legacy, Family::V4) => "iptables-legacy",
            (Variant::Legacy, Family::V6) => "ip6tables-legacy",
            (Variant::Nft, Family::V4) => "iptables-nft",
            (Variant::Nft, Family::V6) => "ip6tables-nft",
        }
    }
}

/// The legacy tables that exist in this namespace
/// (`ip_tables_names`); `None` when legacy iptables is not loaded (or not
/// in this kernel). Read through `/proc/thread-self`: `/proc/net` is the
/// namespace of the process's main thread, not necessarily the caller's.
pub fn legacy_tables(family: Family) -> Option<Vec<String>> {
    let path = match family {
        Family::V4 => "/proc/thread-self/net/ip_tables_names",
        Family::V6 => "/proc/thread-self/net/ip6_tables_names",
    };
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.lines().map(str::to_string).collect())
}

/// Where commands are looked for after `$PATH` (container runtimes often
/// call plugins with a short `PATH`).
const FALLBACK_PATH: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/sbin",
    "/sbin",
    "/usr/local/bin",
    "/usr/bin",
    "/bin",
];

/// An executable called `name` in `$PATH`, else in the usual system
/// directories. Every command gwsteer runs (`nft`, the iptables tools) is
/// found this way.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(FALLBACK_PATH.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// How a backslash outside double quotes reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backslash {
    /// It escapes the next character, as inside quotes.
    Escapes,
    /// It is an ordinary character (as iptables-restore reads it).
    Literal,
}

/// Splits a line of `*-save` or `-S` output into words: blanks separate,
/// double quotes group, and inside quotes a backslash escapes the next
/// character (`\"`, `\\`), as iptables writes them.
pub fn split_words(line: &str, outside_quotes: Backslash) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted || outside_quotes == Backslash::Escapes => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The word after `option` (`--comment`, `-j`) in a rule's words.
pub fn option_value<'a>(words: &'a [String], option: &str) -> Option<&'a str> {
    words
        .windows(2)
        .find(|w| w[0] == option)
        .map(|w| w[1].as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_of_iptables_save_lines() {
        let line =
            r#"-A KIND-MASQ-AGENT -s 10.20.0.0/24 -m comment --comment "gwsteer:n1" -j RETURN"#;
        for b in [Backslash::Escapes, Backslash::Literal] {
            let words = split_words(line, b);
            assert_eq!(
                words,
                [
                    "-A",
                    "KIND-MASQ-AGENT",
                    "-s",
                    "10.20.0.0/24",
                    "-m",
                    "comment",
                    "--comment",
                    "gwsteer:n1",
                    "-j",
                    "RETURN"
                ]
            );
            assert_eq!(option_value(&words, "--comment"), Some("gwsteer:n1"));
            assert_eq!(option_value(&words, "-j"), Some("RETURN"));
            assert_eq!(
                split_words(r#"-A X -m comment --comment "a \"b\" c" -j Y"#, b)[5],
                "a \"b\" c"
            );
        }
        assert_eq!(split_words(r"-i a\b", Backslash::Escapes)[1], "ab");
        assert_eq!(split_words(r"-i a\b", Backslash::Literal)[1], r"a\b");
    }
}
