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
    /// What the policy's chains match: pods' addresses (one element per
    /// pod) or pod subnets (one element per subnet, and one per pod that
    /// opts out). Absent in records of earlier versions: per pod.
    #[serde(default, skip_serializing_if = "FwScope::is_pod")]
    pub scope: FwScope,
}

/// What a policy's member set holds (`scope` of the steering policy).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub enum FwScope {
    /// Each steered pod's addresses.
    #[default]
    Pod,
    /// The pod subnets, less the addresses of pods that opt out.
    Subnet,
}

impl FwScope {
    pub fn is_pod(&self) -> bool {
        *self == FwScope::Pod
    }
}

/// Which of a policy's sets a member element is in.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub enum MemberSet {
    /// A steered pod's address (`scope: pod`).
    #[default]
    Pod,
    /// A pod subnet, a range of the policy's subnet set (`scope: subnet`);
    /// held by the subnet's pods.
    Subnet,
    /// The address of a pod that opts out of a `scope: subnet` policy.
    OptOut,
}

impl MemberSet {
    pub fn is_pod(&self) -> bool {
        *self == MemberSet::Pod
    }
}

/// One element of a policy's sets: a pod's address (per-pod: set
/// membership only), a pod subnet, or an opted-out pod's address.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase")]
pub struct FwMember {
    pub network: String,
    pub policy: String,
    /// A host address (/32 or /128); the subnet for [`MemberSet::Subnet`].
    pub addr: IpNet,
    /// Absent in records of earlier versions: a pod's address.
    #[serde(default, skip_serializing_if = "MemberSet::is_pod")]
    pub set: MemberSet,
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
                }?;
                if p.scope == FwScope::Subnet {
                    write!(f, " of whole pod subnets")?;
                }
                Ok(())
            }
            FwObject::Member(m) => match m.set {
                MemberSet::Pod => write!(
                    f,
                    "firewall member {} of {}/{}",
                    m.addr.addr(),
                    m.network,
                    m.policy
                ),
                MemberSet::Subnet => {
                    write!(
                        f,
                        "firewall subnet {} of {}/{}",
                        m.addr, m.network, m.policy
                    )
                }
                MemberSet::OptOut => write!(
                    f,
                    "firewall opt-out {} of {}/{}",
                    m.addr.addr(),
                    m.network,
                    m.policy
                ),
            },
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
