//! ipset over its netlink protocol (nfnetlink subsystem `NFNL_SUBSYS_IPSET`),
//! without the `ipset` binary: a member add or delete is one request of a
//! few dozen bytes instead of a ~2 ms exec.
//!
//! Only what gwsteer needs: `hash:net` sets of one family, their members,
//! header (with the number of iptables rules that reference the set), and the
//! list of set names. Requests without `NLM_F_EXCL` have the `-exist`
//! semantics of the ipset tool: adding a present member, deleting an absent
//! one or re-creating an identical set is success.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::nfnl::{
    self, AF_INET, Attrs, NLA_F_NET_BYTEORDER, NLM_F_ACK, NLM_F_DUMP, Nfnl, NlError,
};
use crate::objects::Family;

const NFNL_SUBSYS_IPSET: u8 = 6;

/// Protocol versions: gwsteer speaks 7 and accepts a kernel that speaks 6.
const IPSET_PROTOCOL: u8 = 7;
const IPSET_PROTOCOL_MIN: u8 = 6;

// enum ipset_cmd
const CMD_PROTOCOL: u8 = 1;
const CMD_CREATE: u8 = 2;
const CMD_DESTROY: u8 = 3;
const CMD_LIST: u8 = 7;
const CMD_ADD: u8 = 9;
const CMD_DEL: u8 = 10;
const CMD_TEST: u8 = 11;
const CMD_TYPE: u8 = 13;

// Command-level attributes.
const ATTR_PROTOCOL: u16 = 1;
const ATTR_SETNAME: u16 = 2;
const ATTR_TYPENAME: u16 = 3;
const ATTR_REVISION: u16 = 4;
const ATTR_FAMILY: u16 = 5;
const ATTR_FLAGS: u16 = 6;
const ATTR_DATA: u16 = 7;
const ATTR_ADT: u16 = 8;
// Inside ATTR_DATA.
const ATTR_IP: u16 = 1;
const ATTR_CIDR: u16 = 3;
const ATTR_REFERENCES: u16 = 25;
const ATTR_ELEMENTS: u16 = 24;
// Inside ATTR_IP.
const ATTR_IPADDR_IPV4: u16 = 1;
const ATTR_IPADDR_IPV6: u16 = 2;

// Dump flags (ATTR_FLAGS of a LIST request).
const FLAG_LIST_SETNAME: u32 = 1 << 1;
const FLAG_LIST_HEADER: u32 = 1 << 2;

const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;

pub const ENOENT: i32 = 2;
pub const EEXIST: i32 = 17;
// enum ipset_errno
const ERR_PROTOCOL: i32 = 4097;
const ERR_FIND_TYPE: i32 = 4098;
const ERR_MAX_SETS: i32 = 4099;
pub const ERR_BUSY: i32 = 4100;
const ERR_TYPE_MISMATCH: i32 = 4102;
/// TEST: not a member.
const ERR_EXIST: i32 = 4103;
const ERR_INVALID_CIDR: i32 = 4104;
const ERR_INVALID_FAMILY: i32 = 4106;
const ERR_REFERENCED: i32 = 4108;
const ERR_HASH_FULL: i32 = 4352;

/// The one set type gwsteer makes.
pub const HASH_NET: &str = "hash:net";

/// What a set's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetInfo {
    pub typename: String,
    pub family: Option<Family>,
    /// How many iptables rules (in any variant) reference the set.
    pub references: u32,
    pub elements: u32,
}

pub struct Ipset {
    nl: Nfnl,
    protocol: u8,
    /// Highest `hash:net` revision the kernel has, per family, learnt on
    /// the first create.
    revisions: [Option<u8>; 2],
}

/// Human text for an errno of an ipset request (ipset's own codes start
/// at 4096).
pub fn describe(err: &NlError) -> String {
    let NlError::Kernel(errno) = err else {
        return err.to_string();
    };
    match *errno {
        ERR_PROTOCOL => "the kernel rejected the request (ipset protocol error)".into(),
        ERR_FIND_TYPE => format!("the kernel has no {HASH_NET} set type (CONFIG_IP_SET_HASH_NET)"),
        ERR_MAX_SETS => "the kernel's limit of sets is reached (ip_set max_sets)".into(),
        ERR_BUSY => "the set is in use by iptables rules".into(),
        ERR_TYPE_MISMATCH => "a set of this name exists with another type or family".into(),
        ERR_EXIST => "element missing".into(),
        ERR_INVALID_CIDR => "invalid prefix length for the set".into(),
        ERR_INVALID_FAMILY => "address family does not match the set's".into(),
        ERR_REFERENCED => "the set is referenced".into(),
        ERR_HASH_FULL => "the set is full".into(),
        ENOENT => "no such set".into(),
        EEXIST => "a different set of this name exists".into(),
        _ => err.to_string(),
    }
}

fn nfproto(family: Family) -> u8 {
    match family {
        Family::V4 => NFPROTO_IPV4,
        Family::V6 => NFPROTO_IPV6,
    }
}

fn family_of_nfproto(p: u8) -> Option<Family> {
    match p {
        NFPROTO_IPV4 => Some(Family::V4),
        NFPROTO_IPV6 => Some(Family::V6),
        _ => None,
    }
}

/// The `IPSET_ATTR_DATA` of one element: address (network byte order) and
/// prefix length.
fn element(d: &mut Attrs, net: &IpNet) {
    d.nested(ATTR_IP, |ip| match net.network() {
        IpAddr::V4(a) => {
            ip.bytes(ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER, &a.octets());
        }
        IpAddr::V6(a) => {
            ip.bytes(ATTR_IPADDR_IPV6 | NLA_F_NET_BYTEORDER, &a.octets());
        }
    });
    d.u8(ATTR_CIDR, net.prefix_len());
}

fn parse_element(data: &[u8]) -> Option<IpNet> {
    let attrs = nfnl::attrs(data);
    let ip = nfnl::attrs(nfnl::find(&attrs, ATTR_IP)?);
    let addr: IpAddr = if let Some(v4) = nfnl::find(&ip, ATTR_IPADDR_IPV4) {
        let b: [u8; 4] = v4.get(..4)?.try_into().ok()?;
        Ipv4Addr::from(b).into()
    } else {
        let b: [u8; 16] = nfnl::find(&ip, ATTR_IPADDR_IPV6)?
            .get(..16)?
            .try_into()
            .ok()?;
        Ipv6Addr::from(b).into()
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let cidr = nfnl::get_u8(&attrs, ATTR_CIDR).unwrap_or(max);
    IpNet::new(addr, cidr).ok()
}

impl Ipset {
    /// Opens the socket and agrees on the protocol version: proof that the
    /// kernel has ipset (`CONFIG_IP_SET`).
    pub fn open() -> Result<Ipset, NlError> {
        let mut nl = Nfnl::open().map_err(NlError::Io)?;
        let mut a = Attrs::new();
        a.u8(ATTR_PROTOCOL, IPSET_PROTOCOL);
        let answer = nl.request(NFNL_SUBSYS_IPSET, CMD_PROTOCOL, NLM_F_ACK, AF_INET, &a)?;
        let kernel = answer
            .first()
            .and_then(|m| nfnl::get_u8(&nfnl::attrs(m), ATTR_PROTOCOL))
            .ok_or(NlError::Malformed("no protocol version in the answer"))?;
        if kernel < IPSET_PROTOCOL_MIN {
            return Err(NlError::Malformed(
                "the kernel's ipset protocol is older than 6",
            ));
        }
        Ok(Ipset {
            nl,
            protocol: kernel.min(IPSET_PROTOCOL),
            revisions: [None, None],
        })
    }

    fn base(&self, name: &str) -> Attrs {
        let mut a = Attrs::new();
        a.u8(ATTR_PROTOCOL, self.protocol).str(ATTR_SETNAME, name);
        a
    }

    fn call(&mut self, cmd: u8, flags: u16, a: &Attrs) -> Result<Vec<Vec<u8>>, NlError> {
        self.nl.request(NFNL_SUBSYS_IPSET, cmd, flags, AF_INET, a)
    }

    /// The header of set `name`, `None` if there is no such set. One dump
    /// request that returns only the header.
    pub fn info(&mut self, name: &str) -> Result<Option<SetInfo>, NlError> {
        let mut a = self.base(name);
        a.u32(ATTR_FLAGS, FLAG_LIST_HEADER);
        let answer = match self.call(CMD_LIST, NLM_F_DUMP, &a) {
            Ok(answer) => answer,
            Err(NlError::Kernel(ENOENT)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let msg = answer
            .first()
            .ok_or(NlError::Malformed("empty set header"))?;
        let top = nfnl::attrs(msg);
        let data = nfnl::find(&top, ATTR_DATA)
            .map(nfnl::attrs)
            .unwrap_or_default();
        Ok(Some(SetInfo {
            typename: nfnl::get_str(&top, ATTR_TYPENAME).unwrap_or_default(),
            family: nfnl::get_u8(&top, ATTR_FAMILY).and_then(family_of_nfproto),
            references: nfnl::get_be32(&data, ATTR_REFERENCES).unwrap_or(0),
            elements: nfnl::get_be32(&data, ATTR_ELEMENTS).unwrap_or(0),
        }))
    }

    fn revision(&mut self, family: Family) -> Result<u8, NlError> {
        let slot = family as usize;
        if let Some(r) = self.revisions[slot] {
            return Ok(r);
        }
        let mut a = Attrs::new();
        a.u8(ATTR_PROTOCOL, self.protocol)
            .str(ATTR_TYPENAME, HASH_NET)
            .u8(ATTR_FAMILY, nfproto(family));
        let answer = self.call(CMD_TYPE, NLM_F_ACK, &a)?;
        let r = answer
            .first()
            .and_then(|m| nfnl::get_u8(&nfnl::attrs(m), ATTR_REVISION))
            .ok_or(NlError::Malformed("no revision in the type answer"))?;
        self.revisions[slot] = Some(r);
        Ok(r)
    }

    /// Creates an empty `hash:net` set of `family` (default size); an
    /// identical existing set is success, a different one `EEXIST`.
    pub fn create(&mut self, name: &str, family: Family) -> Result<(), NlError> {
        let revision = self.revision(family)?;
        let mut a = self.base(name);
        a.str(ATTR_TYPENAME, HASH_NET)
            .u8(ATTR_REVISION, revision)
            .u8(ATTR_FAMILY, nfproto(family))
            .nested(ATTR_DATA, |_| {});
        self.call(CMD_CREATE, NLM_F_ACK, &a).map(|_| ())
    }

    /// Destroys set `name`; `false` if there was none. A set still
    /// referenced by a rule gives `ERR_BUSY`.
    pub fn destroy(&mut self, name: &str) -> Result<bool, NlError> {
        match self.call(CMD_DESTROY, NLM_F_ACK, &self.base(name)) {
            Ok(_) => Ok(true),
            Err(NlError::Kernel(ENOENT)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn adt(&mut self, cmd: u8, name: &str, net: &IpNet) -> Result<Vec<Vec<u8>>, NlError> {
        let mut a = self.base(name);
        a.nested(ATTR_DATA, |d| element(d, net));
        self.call(cmd, NLM_F_ACK, &a)
    }

    /// Adds `net`; already a member is success. No such set: `ENOENT`.
    pub fn add(&mut self, name: &str, net: &IpNet) -> Result<(), NlError> {
        self.adt(CMD_ADD, name, net).map(|_| ())
    }

    /// Deletes `net`; not a member is success. No such set: `ENOENT`.
    pub fn del(&mut self, name: &str, net: &IpNet) -> Result<(), NlError> {
        self.adt(CMD_DEL, name, net).map(|_| ())
    }

    /// Is `net` a member? No such set: `ENOENT`.
    pub fn test(&mut self, name: &str, net: &IpNet) -> Result<bool, NlError> {
        match self.adt(CMD_TEST, name, net) {
            Ok(_) => Ok(true),
            Err(NlError::Kernel(ERR_EXIST)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every member of `name`, `None` if there is no such set.
    pub fn members(&mut self, name: &str) -> Result<Option<Vec<IpNet>>, NlError> {
        let a = self.base(name);
        let answer = match self.call(CMD_LIST, NLM_F_DUMP, &a) {
            Ok(answer) => answer,
            Err(NlError::Kernel(ENOENT)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for msg in &answer {
            let top = nfnl::attrs(msg);
            if let Some(adt) = nfnl::find(&top, ATTR_ADT) {
                for (kind, data) in nfnl::attrs(adt) {
                    if kind == ATTR_DATA {
                        out.push(
                            parse_element(data)
                                .ok_or(NlError::Malformed("unreadable set element"))?,
                        );
                    }
                }
            }
        }
        out.sort();
        Ok(Some(out))
    }

    /// The names of every set in this namespace.
    pub fn names(&mut self) -> Result<Vec<String>, NlError> {
        let mut a = Attrs::new();
        a.u8(ATTR_PROTOCOL, self.protocol)
            .u32(ATTR_FLAGS, FLAG_LIST_SETNAME);
        let answer = self.call(CMD_LIST, NLM_F_DUMP, &a)?;
        let mut names: Vec<String> = answer
            .iter()
            .filter_map(|m| nfnl::get_str(&nfnl::attrs(m), ATTR_SETNAME))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The underlying socket, for other nfnetlink questions.
    pub fn nfnl(&mut self) -> &mut Nfnl {
        &mut self.nl
    }
}
