//! The firewall objects gwsteer owns: a steering policy's marking, a pod's
//! membership in it, a masquerade exemption; and which firewall made them.

use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// How a policy marks packets.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase", tag = "mode")]
pub enum Marking {
    /// Packets from member pods (to `egress_to`, if any; never to `exclude`)
    /// get `mark` in prerouting, before the routing decision.
    Mark {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        egress_to: Vec<IpNet>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        exclude: Vec<IpNet>,
    },
    /// New connections arriving on `ingress` towards member pods get `mark`
    /// on the connection; packets of those connections coming back from the
    /// pod get it copied to the packet before routing.
    Connmark { ingress: Vec<String> },
}

/// The node-level firewall objects of one steering policy: member sets (one
/// per family), the chain and its rules. Names derive from `network` and
/// `policy`, so two networks never share one.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase")]
pub struct FwPolicy {
    pub network: String,
    pub policy: String,
    pub mark: u32,
    /// Bits of the mark gwsteer owns (`0xffffffff` when not given).
    pub mask: u32,
    pub marking: Marking,
}

/// One pod address in a policy's member set (per-pod: set membership only).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase")]
pub struct FwMember {
    pub network: String,
    pub policy: String,
    /// A host address (/32 or /128).
    pub addr: IpNet,
}

/// Traffic from `cidrs` is never masqueraded by anyone's rules on this node;
/// `chains` are foreign iptables nat chains (e.g. `KIND-MASQ-AGENT`) that get
/// a `RETURN` for those CIDRs inserted at the top.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase")]
pub struct FwExemption {
    pub network: String,
    pub cidrs: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chains: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase", tag = "fw")]
pub enum FwObject {
    Policy(FwPolicy),
    Member(FwMember),
    Exemption(FwExemption),
}

impl fmt::Display for FwObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FwObject::Policy(p) => {
                write!(
                    f,
                    "firewall policy {}/{} mark {:#x}",
                    p.network, p.policy, p.mark
                )?;
                if p.mask != u32::MAX {
                    write!(f, "/{:#x}", p.mask)?;
                }
                match &p.marking {
                    Marking::Mark { egress_to, .. } if !egress_to.is_empty() => {
                        write!(f, " (mark, to {} cidr(s))", egress_to.len())
                    }
                    Marking::Mark { .. } => write!(f, " (mark)"),
                    Marking::Connmark { ingress } => {
                        write!(f, " (connmark, ingress {})", ingress.join(","))
                    }
                }
            }
            FwObject::Member(m) => write!(
                f,
                "firewall member {} of {}/{}",
                m.addr.addr(),
                m.network,
                m.policy
            ),
            FwObject::Exemption(e) => {
                let cidrs: Vec<String> = e.cidrs.iter().map(|c| c.to_string()).collect();
                write!(
                    f,
                    "masquerade exemption {} for {}",
                    e.network,
                    cidrs.join(",")
                )?;
                if !e.chains.is_empty() {
                    write!(f, " (RETURN in {})", e.chains.join(","))?;
                }
                Ok(())
            }
        }
    }
}

/// The firewall implementation that made an object, recorded with every
/// firewall object so that DEL uses the backend that made it. nftables is
/// the only one; records of the iptables backend of earlier versions do not
/// parse (see [`Backend`]'s `Deserialize`) and are set aside as corrupt.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Nftables,
}

/// Why a firewall object of the retired iptables backend is not read back.
pub const RETIRED_IPTABLES: &str = "made by the iptables firewall backend, which this gwsteer \
     no longer has (nftables is the one firewall backend); its GWS-* chains, gws-* ipsets \
     and gwsteer:<network> rules stay in the kernel until removed by hand or by the \
     `gwsteer cleanup` of the version that made them";

impl<'de> Deserialize<'de> for Backend {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Backend, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "nftables" => Ok(Backend::Nftables),
            "iptables" => Err(serde::de::Error::custom(RETIRED_IPTABLES)),
            other => Err(serde::de::Error::unknown_variant(other, &["nftables"])),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Nftables => "nftables",
        })
    }
}
