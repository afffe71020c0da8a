//! ipset over its netlink protocol (nfnetlink subsystem `NFNL_SUBSYS_IPSET`),
//! without the `ipset` binary: a member add or delete is one request of a
//! few dozen bytes instead of a ~2 ms exec.
//!
//! Only what gwsteer needs: `hash:net` sets of one family, their members,
//! header (with the number of iptables rules that reference the set), and the
//! list of set names. Requests without `NLM_F_EXCL` have the `-exist`
//! semantics of the ipset tool: adding a present member, deleting an absent
//! one or re-creating an identical set is success.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::firewall::nfnl::{
    Attrs, Msg, MsgBuf, NLA_F_NET_BYTEORDER, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE,
    NLMSG_ERROR, NlError, Socket,
};
use crate::objects::Family;

const NFNL_SUBSYS_IPSET: u8 = 6;
/// `AF_INET`, the family ipset requests carry in their header.
const AF_INET: u8 = 2;
/// nf_tables' subsystem and its "get generation" request: the cheapest
/// question nf_tables answers.
const NFNL_SUBSYS_NFTABLES: u8 = 10;
const NFT_MSG_GETGEN: u8 = 16;

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

const ENOENT: i32 = 2;
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
    nl: Socket,
    protocol: u8,
    /// Highest `hash:net` revision the kernel has, per family, learnt on
    /// the first create.
    revisions: [Option<u8>; 2],
}

/// Human text for an errno of an ipset request (ipset's own codes start
/// at 4096).
pub fn describe(err: &NlError) -> String {
    let errno = match err {
        NlError::Kernel { errno, .. } => *errno,
        NlError::Socket(_, e) => return format!("netlink socket: {e}"),
        NlError::ShortSend { sent, len } => {
            return format!("netlink socket: the kernel took {sent} of {len} bytes");
        }
        NlError::Timeout(t) => {
            return format!("netlink socket: no answer within {}s", t.as_secs());
        }
        NlError::TooLarge(_) => return malformed("message larger than the receive buffer"),
        NlError::BadLength => return malformed("bad nlmsg_len"),
        NlError::TruncatedError => return malformed("truncated error"),
        NlError::Malformed(what) => return malformed(what),
        NlError::Other(what) => return what.clone(),
    };
    match errno {
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
        _ => io::Error::from_raw_os_error(errno).to_string(),
    }
}

fn malformed(what: &str) -> String {
    format!("malformed netlink answer: {what}")
}

fn kernel(errno: i32) -> NlError {
    NlError::Kernel { errno, ext: None }
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
fn element(d: &mut MsgBuf, net: &IpNet) {
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
    let attrs = Attrs(data);
    let ip = attrs.nested(ATTR_IP)?;
    let addr: IpAddr = if let Some(v4) = ip.get(ATTR_IPADDR_IPV4) {
        let b: [u8; 4] = v4.get(..4)?.try_into().ok()?;
        Ipv4Addr::from(b).into()
    } else {
        let b: [u8; 16] = ip.get(ATTR_IPADDR_IPV6)?.get(..16)?.try_into().ok()?;
        Ipv6Addr::from(b).into()
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let cidr = attrs.u8(ATTR_CIDR).unwrap_or(max);
    IpNet::new(addr, cidr).ok()
}

impl Ipset {
    /// Opens the socket and agrees on the protocol version: proof that the
    /// kernel has ipset (`CONFIG_IP_SET`).
    pub fn open() -> Result<Ipset, NlError> {
        let mut ipset = Ipset {
            nl: Socket::open(0)?,
            protocol: IPSET_PROTOCOL,
            revisions: [None, None],
        };
        let answer = ipset.call(CMD_PROTOCOL, NLM_F_ACK, |a| {
            a.u8(ATTR_PROTOCOL, IPSET_PROTOCOL);
        })?;
        let kernel = answer
            .first()
            .and_then(|m| Attrs(m).u8(ATTR_PROTOCOL))
            .ok_or(NlError::Malformed("no protocol version in the answer"))?;
        if kernel < IPSET_PROTOCOL_MIN {
            return Err(NlError::Malformed(
                "the kernel's ipset protocol is older than 6",
            ));
        }
        ipset.protocol = kernel.min(IPSET_PROTOCOL);
        Ok(ipset)
    }

    /// Sends one request and collects the payloads (after the 4-byte
    /// `nfgenmsg`) of every data message answering it. A request with
    /// `NLM_F_ACK` ends at the kernel's acknowledgement, a dump at
    /// `NLMSG_DONE`; an error ends either. `EAGAIN` (nfnetlink has just
    /// loaded the subsystem's module and asks for a replay) is retried.
    fn request(
        &mut self,
        subsys: u8,
        cmd: u8,
        flags: u16,
        family: u8,
        fill: impl Fn(&mut MsgBuf),
    ) -> Result<Vec<Vec<u8>>, NlError> {
        const EAGAIN: i32 = 11;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let seq = self.nl.next_seq();
            let mut msg = MsgBuf::default();
            let kind = ((subsys as u16) << 8) | cmd as u16;
            msg.begin(kind, NLM_F_REQUEST | flags, seq, family, 0);
            fill(&mut msg);
            msg.end();
            let mut answers = Vec::new();
            let result = self.nl.exchange(&msg, |m: Msg<'_>| {
                if m.seq != seq {
                    return Ok(false);
                }
                match m.kind {
                    NLMSG_ERROR | NLMSG_DONE => match m.code().unwrap_or(0) {
                        code if code < 0 => Err(kernel(-code)),
                        _ => Ok(true),
                    },
                    _ => {
                        answers.push(m.attrs().0.to_vec());
                        Ok(false)
                    }
                }
            });
            match result {
                Err(NlError::Kernel { errno: EAGAIN, .. }) if attempts < 3 => continue,
                Err(e) => return Err(e),
                Ok(()) => return Ok(answers),
            }
        }
    }

    fn call(
        &mut self,
        cmd: u8,
        flags: u16,
        fill: impl Fn(&mut MsgBuf),
    ) -> Result<Vec<Vec<u8>>, NlError> {
        self.request(NFNL_SUBSYS_IPSET, cmd, flags, AF_INET, fill)
    }

    /// A request about set `name`, with whatever else `fill` adds.
    fn call_set(
        &mut self,
        cmd: u8,
        flags: u16,
        name: &str,
        fill: impl Fn(&mut MsgBuf),
    ) -> Result<Vec<Vec<u8>>, NlError> {
        let protocol = self.protocol;
        self.call(cmd, flags, |a| {
            a.u8(ATTR_PROTOCOL, protocol).str(ATTR_SETNAME, name);
            fill(a);
        })
    }

    /// The header of set `name`, `None` if there is no such set. One dump
    /// request that returns only the header.
    pub fn info(&mut self, name: &str) -> Result<Option<SetInfo>, NlError> {
        let answer = match self.call_set(CMD_LIST, NLM_F_DUMP, name, |a| {
            a.u32(ATTR_FLAGS, FLAG_LIST_HEADER);
        }) {
            Ok(answer) => answer,
            Err(e) if e.is_enoent() => return Ok(None),
            Err(e) => return Err(e),
        };
        let msg = answer
            .first()
            .ok_or(NlError::Malformed("empty set header"))?;
        let top = Attrs(msg);
        let data = top.nested(ATTR_DATA).unwrap_or(Attrs(&[]));
        Ok(Some(SetInfo {
            typename: top.string(ATTR_TYPENAME).unwrap_or_default(),
            family: top.u8(ATTR_FAMILY).and_then(family_of_nfproto),
            references: data.be_u32(ATTR_REFERENCES).unwrap_or(0),
            elements: data.be_u32(ATTR_ELEMENTS).unwrap_or(0),
        }))
    }

    fn revision(&mut self, family: Family) -> Result<u8, NlError> {
        let slot = family as usize;
        if let Some(r) = self.revisions[slot] {
            return Ok(r);
        }
        let protocol = self.protocol;
        let answer = self.call(CMD_TYPE, NLM_F_ACK, |a| {
            a.u8(ATTR_PROTOCOL, protocol)
                .str(ATTR_TYPENAME, HASH_NET)
                .u8(ATTR_FAMILY, nfproto(family));
        })?;
        let r = answer
            .first()
            .and_then(|m| Attrs(m).u8(ATTR_REVISION))
            .ok_or(NlError::Malformed("no revision in the type answer"))?;
        self.revisions[slot] = Some(r);
        Ok(r)
    }

    /// Creates an empty `hash:net` set of `family` (default size); an
    /// identical existing set is success, a different one `EEXIST`.
    pub fn create(&mut self, name: &str, family: Family) -> Result<(), NlError> {
        let revision = self.revision(family)?;
        self.call_set(CMD_CREATE, NLM_F_ACK, name, |a| {
            a.str(ATTR_TYPENAME, HASH_NET)
                .u8(ATTR_REVISION, revision)
                .u8(ATTR_FAMILY, nfproto(family))
                .nested(ATTR_DATA, |_| {});
        })
        .map(|_| ())
    }

    /// Destroys set `name`; `false` if there was none. A set still
    /// referenced by a rule gives `ERR_BUSY`.
    pub fn destroy(&mut self, name: &str) -> Result<bool, NlError> {
        match self.call_set(CMD_DESTROY, NLM_F_ACK, name, |_| {}) {
            Ok(_) => Ok(true),
            Err(e) if e.is_enoent() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn adt(&mut self, cmd: u8, name: &str, net: &IpNet) -> Result<Vec<Vec<u8>>, NlError> {
        self.call_set(cmd, NLM_F_ACK, name, |a| {
            a.nested(ATTR_DATA, |d| element(d, net));
        })
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
            Err(e) if e.errno() == Some(ERR_EXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every member of `name`, `None` if there is no such set.
    pub fn members(&mut self, name: &str) -> Result<Option<Vec<IpNet>>, NlError> {
        let answer = match self.call_set(CMD_LIST, NLM_F_DUMP, name, |_| {}) {
            Ok(answer) => answer,
            Err(e) if e.is_enoent() => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for msg in &answer {
            if let Some(adt) = Attrs(msg).nested(ATTR_ADT) {
                for (kind, data) in adt.iter() {
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
        let protocol = self.protocol;
        let answer = self.call(CMD_LIST, NLM_F_DUMP, |a| {
            a.u8(ATTR_PROTOCOL, protocol)
                .u32(ATTR_FLAGS, FLAG_LIST_SETNAME);
        })?;
        let mut names: Vec<String> = answer
            .iter()
            .filter_map(|m| Attrs(m).string(ATTR_SETNAME))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Does the kernel answer nf_tables requests in this namespace? One
    /// `NFT_MSG_GETGEN` on the same socket.
    pub fn nftables_answers(&mut self) -> bool {
        // nf_tables requests carry family 0 (`NFPROTO_UNSPEC`).
        self.request(NFNL_SUBSYS_NFTABLES, NFT_MSG_GETGEN, NLM_F_ACK, 0, |_| {})
            .is_ok()
    }
}
