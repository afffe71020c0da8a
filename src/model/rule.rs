//! A policy routing rule.

use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{Family, TABLE_MAIN, write_net};

/// A policy routing rule, `ip rule add [from SRC] [to DST] [fwmark M/MASK]
/// [iif DEV] priority P lookup TABLE proto gwsteer`.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RuleSpec {
    pub family: Family,
    pub priority: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwmask: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iif: Option<String>,
    pub table: u32,
}

impl RuleSpec {
    /// The rule as the kernel compares and reports it: empty selectors
    /// (`/0`) dropped, a mark without a mask has the full mask, no mark at
    /// all is no mark. Equal canonical forms are the same kernel rule.
    pub fn canonical(&self) -> RuleSpec {
        let nonempty = |n: Option<IpNet>| n.filter(|n| n.prefix_len() > 0);
        let fwmask = self.fwmask.filter(|m| *m != u32::MAX);
        let fwmark = match (self.fwmark, fwmask) {
            (Some(0) | None, None) => None,
            (mark, _) => Some(mark.unwrap_or(0)),
        };
        RuleSpec {
            src: nonempty(self.src),
            dst: nonempty(self.dst),
            fwmark,
            fwmask,
            ..self.clone()
        }
    }
}

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rule {}:", self.family, self.priority)?;
        match &self.src {
            Some(src) => {
                f.write_str(" from ")?;
                write_net(f, src)?;
            }
            None => f.write_str(" from all")?,
        }
        if let Some(dst) = &self.dst {
            f.write_str(" to ")?;
            write_net(f, dst)?;
        }
        if let Some(mark) = self.fwmark {
            write!(f, " fwmark {mark:#x}")?;
            if let Some(mask) = self.fwmask {
                write!(f, "/{mask:#x}")?;
            }
        }
        if let Some(iif) = &self.iif {
            write!(f, " iif {iif}")?;
        }
        match self.table {
            TABLE_MAIN => f.write_str(" lookup main"),
            t => write!(f, " lookup {t}"),
        }
    }
}
