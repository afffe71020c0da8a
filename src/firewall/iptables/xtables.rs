//! The iptables tools: which variant (legacy or nft) a set of binaries
//! drives, reading a table with `*-save`, changing it with one
//! `*-restore --noflush` transaction, and the save format parsed into rules.
//!
//! Every command is an argument vector; scripts go to the restore tool on
//! stdin. Nothing runs through a shell.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::firewall::xtables::{
    Backslash, LOCK_WAIT_SECS, Variant, find_binary, legacy_tables, option_value, split_words,
};
use crate::objects::Family;

/// The save and restore binaries of one variant, for both families.
#[derive(Clone, Debug)]
pub struct Tools {
    pub variant: Variant,
    save4: PathBuf,
    restore4: PathBuf,
    save6: PathBuf,
    restore6: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    find_binary(name)
}

impl Tools {
    /// The binaries of `variant` by their explicit names
    /// (`iptables-legacy-save`, `ip6tables-nft-restore`, …), or which one is
    /// missing.
    pub fn explicit(variant: Variant) -> Result<Tools, String> {
        // "iptables-legacy" + "save" → "iptables-legacy-save"
        let find = |family: Family, op: &str| {
            let name = format!("{}-{op}", variant.command(family));
            which(&name).ok_or(name)
        };
        Ok(Tools {
            variant,
            save4: find(Family::V4, "save")?,
            restore4: find(Family::V4, "restore")?,
            save6: find(Family::V6, "save")?,
            restore6: find(Family::V6, "restore")?,
        })
    }

    /// The system's `iptables-save` & co. (the distribution's alternative),
    /// with the variant they drive read from the binary they resolve to
    /// (`xtables-nft-multi` / `xtables-legacy-multi`; iptables before 1.8
    /// knew only legacy).
    pub fn system() -> Result<Tools, String> {
        let find = |name: &str| which(name).ok_or_else(|| name.to_string());
        let save4 = find("iptables-save")?;
        let real = std::fs::canonicalize(&save4).unwrap_or_else(|_| save4.clone());
        let file = real
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let variant = if file.contains("nft") {
            Variant::Nft
        } else {
            Variant::Legacy
        };
        Ok(Tools {
            variant,
            save4,
            restore4: find("iptables-restore")?,
            save6: find("ip6tables-save")?,
            restore6: find("ip6tables-restore")?,
        })
    }

    /// `iptables-nft`, `ip6tables-legacy`: how messages name the tool.
    pub fn label(&self, family: Family) -> &'static str {
        self.variant.command(family)
    }

    fn save_bin(&self, family: Family) -> &Path {
        match family {
            Family::V4 => &self.save4,
            Family::V6 => &self.save6,
        }
    }

    fn restore_bin(&self, family: Family) -> &Path {
        match family {
            Family::V4 => &self.restore4,
            Family::V6 => &self.restore6,
        }
    }

    /// The rules of `table`. A legacy table that does not exist yet in this
    /// namespace reads as empty without being created (reading it with the
    /// tool would instantiate it).
    pub fn save(&self, family: Family, table: &str) -> Result<Table, String> {
        if self.variant == Variant::Legacy
            && !legacy_tables(family).is_some_and(|t| t.iter().any(|n| n == table))
        {
            return Ok(Table::absent(table));
        }
        let bin = self.save_bin(family);
        let out = Command::new(bin)
            .args(["-t", table])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} -t {table}: {}",
                bin.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Table::parse(table, &String::from_utf8_lossy(&out.stdout)))
    }

    /// Applies `script` (one `*table … COMMIT` block) as one transaction,
    /// leaving everything it does not name alone.
    pub fn restore(&self, family: Family, script: &str) -> Result<(), String> {
        let bin = self.restore_bin(family);
        let mut child = Command::new(bin)
            .arg(format!("--wait={LOCK_WAIT_SECS}"))
            .arg("--noflush")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running {}: {e}", bin.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| format!("writing to {}: {e}", bin.display()))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for {}: {e}", bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} --noflush: {}",
                bin.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }
}

/// One rule as `*-save` prints it: `-A <chain> <args…>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub args: Vec<String>,
}

impl Rule {
    /// The value of `--comment`, if the rule has one.
    pub fn comment(&self) -> Option<&str> {
        option_value(&self.args, "--comment")
    }

    /// The `-j` target.
    pub fn target(&self) -> Option<&str> {
        option_value(&self.args, "-j")
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-A {} {}", self.chain, join_args(&self.args))
    }
}

/// One table as `*-save -t <table>` prints it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    /// Every chain, built-in and user-defined, in save order.
    pub chains: Vec<String>,
    pub rules: Vec<Rule>,
}

impl Table {
    pub fn absent(name: &str) -> Table {
        Table {
            name: name.to_string(),
            ..Table::default()
        }
    }

    pub fn parse(name: &str, text: &str) -> Table {
        let mut table = Table::absent(name);
        for line in text.lines() {
            if let Some(decl) = line.strip_prefix(':') {
                if let Some(chain) = decl.split_whitespace().next() {
                    table.chains.push(chain.to_string());
                }
            } else if line.starts_with("-A ") {
                let mut words = split_args(line).into_iter().skip(1);
                if let Some(chain) = words.next() {
                    table.rules.push(Rule {
                        chain,
                        args: words.collect(),
                    });
                }
            }
        }
        table
    }

    pub fn has_chain(&self, chain: &str) -> bool {
        self.chains.iter().any(|c| c == chain)
    }

    pub fn chain_rules<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| r.chain == chain)
    }
}

/// Splits a save line into words: blanks separate, double quotes group,
/// a backslash escapes the next character, inside quotes or not.
pub fn split_args(line: &str) -> Vec<String> {
    split_words(line, Backslash::Escapes)
}

/// One word for a restore script, quoted when it needs to be.
pub fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:!=,+@%[]".contains(c));
    if plain {
        return arg.to_string();
    }
    let mut s = String::with_capacity(arg.len() + 2);
    s.push('"');
    for c in arg.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

pub fn join_args(args: &[String]) -> String {
    args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVED: &str = r#"# Generated by iptables-nft-save v1.8.9 (nf_tables) on Sat Nov 21 05:25:34 2026
*mangle
:PREROUTING ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:GWS-1a2b3c4d - [0:0]
-A PREROUTING -m comment --comment "gwsteer:net/pol" -j GWS-1a2b3c4d
-A PREROUTING -m comment --comment "someone \"else\" here" -j MARK --set-xmark 0x1/0x1
-A GWS-1a2b3c4d -m set --match-set gws-1a2b3c4d-4 src -m comment --comment "gwsteer:net/pol" -j MARK --set-xmark 0x14/0xff
COMMIT
# Completed on Sat Nov 21 05:25:34 2026
"#;

    #[test]
    fn save_output_parses_into_chains_and_rules() {
        let t = Table::parse("mangle", SAVED);
        assert_eq!(t.chains, vec!["PREROUTING", "FORWARD", "GWS-1a2b3c4d"]);
        assert_eq!(t.rules.len(), 3);
        assert_eq!(t.rules[0].chain, "PREROUTING");
        assert_eq!(t.rules[0].comment(), Some("gwsteer:net/pol"));
        assert_eq!(t.rules[0].target(), Some("GWS-1a2b3c4d"));
        assert_eq!(t.rules[1].comment(), Some("someone \"else\" here"));
        assert_eq!(t.chain_rules("GWS-1a2b3c4d").count(), 1);
    }

    #[test]
    fn quoting_round_trips_through_the_splitter() {
        for arg in ["plain", "gwsteer:net/pol", "two words", "a \"q\" b\\c", ""] {
            let line = format!("-A X {}", quote(arg));
            assert_eq!(split_args(&line)[2], arg, "{line}");
        }
    }
}
