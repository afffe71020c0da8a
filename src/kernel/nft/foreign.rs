//! The iptables half of a masquerade exemption: a `RETURN` for each exempt
//! CIDR at the top of foreign nat chains (e.g. kind's `KIND-MASQ-AGENT`), in
//! whichever of iptables-legacy and iptables-nft has that chain. The nft
//! identity mapping already exempts the traffic from every later
//! masquerade; these rules keep the foreign chains' own logic honest (a
//! masq agent that counts, logs or marks) and protect against a primary
//! that NATs before gwsteer's chain.
//!
//! Reading is cheap and exec-free, because `ensure` runs on every pod ADD:
//! iptables-nft chains are one nf_tables rule dump (iptables-nft's rule
//! encoding decoded in [`nft_return_source`]), iptables-legacy chains one
//! table read through getsockopt ([`super::legacy`]). Writing (`-I`, `-D`)
//! runs the variant's own binary with `-w`; a rule the readers cannot
//! decode is checked with `-C`.
//!
//! A variant is only looked at when its nat table exists: legacy's is
//! listed in `/proc/thread-self/net/ip{,6}_tables_names`, iptables-nft's is
//! an nf_tables table `ip nat`/`ip6 nat`. Nothing here ever makes a kernel
//! load the legacy iptables modules.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Command, Output};

use ipnet::IpNet;

use super::legacy;
use super::messages::{DumpedRule, NFPROTO_IPV4, NFPROTO_IPV6, NfSocket};
use super::nftables::find_binary;
use crate::error::{Error, Result, code};
use crate::kernel::nft::nfnl::{Attrs, c_string};
use crate::kernel::nft::xtables::{
    Backslash, CHAIN_PREFIX, COMMENT_PREFIX, LOCK_WAIT_SECS, Variant, legacy_tables, option_value,
    split_words,
};
use crate::model::Family;
/// `NFT_RETURN`: iptables-nft's `-j RETURN`.
const NFT_RETURN: i32 = -5;

/// What a foreign nat chain holds for one network, read without iptables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainState {
    /// No such chain (or no nat table) in this variant.
    Absent,
    /// The chain exists; the sources of its `gwsteer:<network>` RETURNs.
    Present(Vec<IpNet>),
    /// The chain exists but a rule of this network's is in a form the
    /// reader does not know: ask iptables (`-C`).
    Unreadable,
}

/// One iptables command: variant and address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub variant: Variant,
    pub family: Family,
}

impl Tool {
    pub fn all() -> impl Iterator<Item = Tool> {
        Variant::ALL.into_iter().flat_map(|variant| {
            [Family::V4, Family::V6]
                .into_iter()
                .map(move |family| Tool { variant, family })
        })
    }

    pub fn binary(self) -> &'static str {
        self.variant.command(self.family)
    }

    fn nfproto(self) -> u8 {
        match self.family {
            Family::V4 => NFPROTO_IPV4,
            Family::V6 => NFPROTO_IPV6,
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary())
    }
}

/// One exemption rule: `-s <cidr> -m comment --comment gwsteer:<network> -j RETURN`.
#[derive(Debug, Clone)]
pub struct ReturnRule {
    pub chain: String,
    pub cidr: IpNet,
    pub network: String,
}

impl ReturnRule {
    pub fn comment(network: &str) -> String {
        format!("{COMMENT_PREFIX}{network}")
    }

    fn spec(&self) -> Vec<String> {
        vec![
            "-s".into(),
            self.cidr.trunc().to_string(),
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            ReturnRule::comment(&self.network),
            "-j".into(),
            "RETURN".into(),
        ]
    }
}

/// Runs the iptables commands; remembers where the binaries are.
#[derive(Default)]
pub struct Xtables {
    binaries: Vec<(Tool, Option<PathBuf>)>,
    /// How many iptables commands ran (tests and cost accounting).
    pub runs: usize,
}

impl Xtables {
    fn binary(&mut self, tool: Tool) -> Option<PathBuf> {
        if let Some((_, path)) = self.binaries.iter().find(|(t, _)| *t == tool) {
            return path.clone();
        }
        let path = find_binary(tool.binary());
        self.binaries.push((tool, path.clone()));
        path
    }

    /// Does this variant have a nat table in this namespace?
    pub fn has_nat(&mut self, nl: &mut NfSocket, tool: Tool) -> Result<bool> {
        match tool.variant {
            // No list: no legacy iptables in this kernel (or not loaded).
            Variant::Legacy => Ok(legacy_tables(tool.family)
                .is_some_and(|names| names.iter().any(|l| l.trim() == "nat"))),
            Variant::Nft => nl.table_exists(tool.nfproto(), "nat").map_err(|e| {
                Error::new(
                    code::FIREWALL,
                    format!("looking for the {} nat table: {e}", tool),
                )
            }),
        }
    }

    /// What `chain` holds for `network` in this variant's nat table.
    pub fn read_chain(
        &mut self,
        nl: &mut NfSocket,
        tool: Tool,
        chain: &str,
        network: &str,
    ) -> Result<ChainState> {
        if !self.has_nat(nl, tool)? {
            return Ok(ChainState::Absent);
        }
        let comment = ReturnRule::comment(network);
        match tool.variant {
            Variant::Nft => {
                let reading = |e| {
                    Error::new(
                        code::FIREWALL,
                        format!("reading chain {chain} of the {tool} nat table: {e}"),
                    )
                };
                if !nl
                    .chain_exists(tool.nfproto(), "nat", chain)
                    .map_err(reading)?
                {
                    return Ok(ChainState::Absent);
                }
                let rules = match nl.rules(tool.nfproto(), "nat", Some(chain)) {
                    Ok(rules) => rules,
                    Err(e) if e.is_enoent() => return Ok(ChainState::Absent),
                    Err(e) => return Err(reading(e)),
                };
                let mut sources = Vec::new();
                for rule in &rules {
                    match nft_return_source(rule, tool.family) {
                        Some((source, Some(c))) if c == comment => sources.push(source),
                        Some(_) => {}
                        None if nft_rule_comment(rule).as_deref() == Some(comment.as_str()) => {
                            return Ok(ChainState::Unreadable);
                        }
                        None => {}
                    }
                }
                Ok(ChainState::Present(sources))
            }
            Variant::Legacy => match legacy::read_chain(tool.family, "nat", chain) {
                Ok(None) => Ok(ChainState::Absent),
                Ok(Some(rules)) => Ok(ChainState::Present(
                    rules
                        .into_iter()
                        .filter(|r| {
                            r.comment.as_deref() == Some(comment.as_str())
                                && r.verdict == Some(legacy::XT_RETURN)
                                && r.other_conditions == 0
                        })
                        .filter_map(|r| r.source)
                        .collect(),
                )),
                Err(e) => {
                    log::debug!(
                        "reading the {tool} nat table directly failed ({e}); asking {tool}"
                    );
                    match self.chain_listed(tool, chain)? {
                        Some(true) => Ok(ChainState::Unreadable),
                        Some(false) => Ok(ChainState::Absent),
                        None => Err(Error::new(
                            code::FIREWALL,
                            format!(
                                "reading the {tool} nat table: {e} (and {tool} is not installed)"
                            ),
                        )),
                    }
                }
            },
        }
    }

    /// `-S chain`: does the chain exist? `None` when the binary is missing.
    fn chain_listed(&mut self, tool: Tool, chain: &str) -> Result<Option<bool>> {
        let Some(out) = self.run(tool, &["-S", chain])? else {
            return Ok(None);
        };
        match out.status.code() {
            Some(0) => Ok(Some(true)),
            Some(1) => Ok(Some(false)),
            _ => Err(failed(tool, &format!("-S {chain}"), &out)),
        }
    }

    /// Is the variant's binary installed?
    pub fn installed(&mut self, tool: Tool) -> bool {
        self.binary(tool).is_some()
    }

    /// Is the rule in the chain? (`-C`)
    pub fn check(&mut self, tool: Tool, rule: &ReturnRule) -> Result<bool> {
        let mut args = vec!["-C".to_string(), rule.chain.clone()];
        args.extend(rule.spec());
        let out = self.run_owned(tool, &args)?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(failed(tool, &args.join(" "), &out)),
        }
    }

    /// Puts the rule at the top of the chain (`-I chain 1`).
    pub fn insert(&mut self, tool: Tool, rule: &ReturnRule) -> Result<()> {
        let mut args = vec!["-I".to_string(), rule.chain.clone(), "1".to_string()];
        args.extend(rule.spec());
        let out = self.run_owned(tool, &args)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(failed(tool, &args.join(" "), &out))
        }
    }

    /// Deletes every copy of the rule; an absent rule is success.
    pub fn remove(&mut self, tool: Tool, rule: &ReturnRule) -> Result<()> {
        let mut args = vec!["-D".to_string(), rule.chain.clone()];
        args.extend(rule.spec());
        // -D deletes one copy; a few rounds cover duplicates made by hand.
        for _ in 0..8 {
            let out = self.run_owned(tool, &args)?;
            match out.status.code() {
                Some(0) => continue,
                Some(1) => return Ok(()),
                _ => return Err(failed(tool, &args.join(" "), &out)),
            }
        }
        Ok(())
    }

    /// Every rule of this variant's nat table whose comment starts with
    /// `gwsteer:` and that does not jump to a `GWS-` (or older `GWSTEER-`)
    /// chain (those belong to the retired iptables backend, whose chains and
    /// jumps go together, by hand), as `-A …` argument lists.
    pub fn owned_rules(&mut self, nl: &mut NfSocket, tool: Tool) -> Result<Vec<Vec<String>>> {
        if !self.has_nat(nl, tool)? {
            return Ok(Vec::new());
        }
        let Some(out) = self.run(tool, &["-S"])? else {
            log::warn!("{tool} is not installed; cannot look for gwsteer rules in its nat table");
            return Ok(Vec::new());
        };
        if !out.status.success() {
            return Err(failed(tool, "-S", &out));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .map(|line| split_words(line, Backslash::Literal))
            .filter(|words| words.first().map(String::as_str) == Some("-A"))
            .filter(|words| {
                let comment = option_value(words, "--comment");
                let target = option_value(words, "-j");
                comment.is_some_and(|c| c.starts_with(COMMENT_PREFIX))
                    && !target
                        .is_some_and(|t| t.starts_with(CHAIN_PREFIX) || t.starts_with("GWSTEER-"))
            })
            .collect())
    }

    /// Deletes a rule given as the `-A …` words of `-S` output.
    pub fn delete_listed(&mut self, tool: Tool, words: &[String]) -> Result<()> {
        let mut args = vec!["-D".to_string()];
        args.extend(words.iter().skip(1).cloned());
        let out = self.run_owned(tool, &args)?;
        match out.status.code() {
            Some(0) | Some(1) => Ok(()),
            _ => Err(failed(tool, &args.join(" "), &out)),
        }
    }

    fn run_owned(&mut self, tool: Tool, args: &[String]) -> Result<Output> {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(tool, &refs)?.ok_or_else(|| {
            Error::new(
                code::FIREWALL,
                format!("{} is not installed", tool.binary()),
            )
        })
    }

    /// `<tool> -w <wait> -t nat ARGS`; `None` when the binary is missing.
    fn run(&mut self, tool: Tool, args: &[&str]) -> Result<Option<Output>> {
        let Some(binary) = self.binary(tool) else {
            return Ok(None);
        };
        self.runs += 1;
        Command::new(&binary)
            .args(["-w", LOCK_WAIT_SECS, "-t", "nat"])
            .args(args)
            .output()
            .map(Some)
            .map_err(|e| Error::new(code::FIREWALL, format!("running {}: {e}", binary.display())))
    }
}

fn failed(tool: Tool, args: &str, out: &Output) -> Error {
    Error::new(
        code::FIREWALL,
        format!(
            "{tool} -t nat {args} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    )
}

// Expression attributes (linux/netfilter/nf_tables.h).
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_MATCH_NAME: u16 = 1;
const NFTA_MATCH_INFO: u16 = 3;

/// The source CIDR and comment of an iptables-nft `-s <cidr> [-m comment
/// --comment …] -j RETURN` rule; `None` for a rule of any other shape.
/// iptables-nft loads the source address (whole, or only the bytes the
/// prefix covers), masks it if the prefix is not byte-aligned, compares it,
/// and returns; the comment is an xt `comment` match (or, in newer
/// versions, the rule's userdata comment).
pub fn nft_return_source(rule: &DumpedRule, family: Family) -> Option<(IpNet, Option<String>)> {
    let (offset, addr_len) = match family {
        Family::V4 => (12, 4),
        Family::V6 => (8, 16),
    };
    let mut loaded = None;
    let mut mask: Option<Vec<u8>> = None;
    let mut addr: Option<Vec<u8>> = None;
    let mut comment = rule.comment.clone();
    let mut returns = false;
    for expr in &rule.exprs {
        let attrs = expr.attrs();
        match expr.name.as_str() {
            "payload" => {
                if loaded.is_some()
                    || attrs.be_u32(NFTA_PAYLOAD_BASE)? != NFT_PAYLOAD_NETWORK_HEADER
                    || attrs.be_u32(NFTA_PAYLOAD_OFFSET)? != offset
                {
                    return None;
                }
                loaded = Some(attrs.be_u32(NFTA_PAYLOAD_LEN)? as usize);
            }
            "bitwise" => mask = Some(data_value(attrs.get(NFTA_BITWISE_MASK)?)?.to_vec()),
            "cmp" => {
                if loaded.is_none() || addr.is_some() || attrs.be_u32(NFTA_CMP_OP)? != NFT_CMP_EQ {
                    return None;
                }
                addr = Some(data_value(attrs.get(NFTA_CMP_DATA)?)?.to_vec());
            }
            "match" => {
                if attrs.string(NFTA_MATCH_NAME)? != "comment" {
                    return None;
                }
                comment = Some(c_string(attrs.get(NFTA_MATCH_INFO)?));
            }
            "counter" => {}
            "immediate" => {
                let data = Attrs(attrs.get(NFTA_IMMEDIATE_DATA)?);
                let verdict = Attrs(data.get(NFTA_DATA_VERDICT)?);
                returns = verdict.be_u32(NFTA_VERDICT_CODE)? as i32 == NFT_RETURN;
                if !returns {
                    return None;
                }
            }
            _ => return None,
        }
    }
    let len = loaded?;
    let addr = addr?;
    if !returns || len == 0 || len > addr_len || addr.len() != len {
        return None;
    }
    let prefix = match &mask {
        Some(mask) if mask.len() == len => mask.iter().map(|b| b.count_ones()).sum::<u32>(),
        Some(_) => return None,
        None => (len * 8) as u32,
    };
    let mut octets = [0u8; 16];
    octets[..len].copy_from_slice(&addr);
    let ip = match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(octets)),
    };
    let net = IpNet::new(ip, u8::try_from(prefix).ok()?).ok()?.trunc();
    Some((net, comment))
}

/// The comment of an iptables-nft rule, wherever it is kept.
fn nft_rule_comment(rule: &DumpedRule) -> Option<String> {
    rule.exprs
        .iter()
        .filter(|e| e.name == "match")
        .find(|e| e.attrs().string(NFTA_MATCH_NAME).as_deref() == Some("comment"))
        .and_then(|e| e.attrs().get(NFTA_MATCH_INFO).map(c_string))
        .or_else(|| rule.comment.clone())
}

fn data_value(nested: &[u8]) -> Option<&[u8]> {
    Attrs(nested).get(NFTA_DATA_VALUE)
}
