//! Kernel notifications that may concern gwsteer's objects, for the node
//! agent: an rtnetlink socket joined to the rule, route, link and address
//! multicast groups (IPv4 and IPv6), and an nfnetlink socket joined to
//! `NFNLGRP_NFTABLES`, both non-blocking, in the namespace of the thread
//! that opens them.
//!
//! [`Watch::drain`] reads everything queued and names the notifications
//! that could mean a gwsteer object was deleted or an imposter appeared
//! ([`relevance`]); the rest (a pod's veth coming up, a neighbour, gwsteer's
//! own rules and routes being made) is counted and dropped. A receive
//! buffer overrun (`ENOBUFS`: notifications were lost) is reported as such:
//! the caller must then assume anything changed.
//!
//! Sysctls send no notifications; a changed sysctl is found by the
//! periodic round only. Objects in pods' namespaces are not watched.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use netlink_sys::{Socket as RawSocket, SocketAddr};

use super::nl::{Attrs, Msg, NETLINK_NETFILTER, NETLINK_ROUTE};
use crate::error::{Error, Result};
use crate::model::RTPROT_GWSTEER;

// rtnetlink multicast groups (`enum rtnetlink_groups`).
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV4_RULE: u32 = 8;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_ROUTE: u32 = 11;
const RTNLGRP_IPV6_RULE: u32 = 19;
/// `NFNLGRP_NFTABLES`.
const NFNLGRP_NFTABLES: u32 = 7;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWRULE: u16 = 32;
const RTM_DELRULE: u16 = 33;

/// `RTA_TABLE` and `FRA_TABLE` (same number).
const ATTR_TABLE: u16 = 15;
const FRA_PROTOCOL: u16 = 21;
const IFLA_IFNAME: u16 = 3;
/// `RTM_F_CLONED`: a cached (IPv6) route, not a configured one.
const RTM_F_CLONED: u32 = 0x200;
const IFF_UP: u32 = 0x1;

/// `NFNL_SUBSYS_NFTABLES`.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWGEN: u16 = 16;

/// `sizeof(struct rtmsg)`, `struct fib_rule_hdr`, `struct ifinfomsg`.
const RTMSG_LEN: usize = 12;
const IFINFOMSG_LEN: usize = 16;
/// `sizeof(struct ifaddrmsg)`; `struct nfgenmsg`.
const IFADDRMSG_LEN: usize = 8;
const NFGENMSG_LEN: usize = 4;

/// Bigger than the default: a burst (a pod's teardown, `ip rule flush`)
/// must not overrun it.
const RCVBUF: libc::c_int = 4 << 20;

/// What one [`Watch::drain`] read.
#[derive(Debug, Default)]
pub struct Drained {
    /// Notifications read.
    pub seen: usize,
    /// Why those that matter matter (one line each, at most a few).
    pub relevant: Vec<String>,
    /// How many mattered (`relevant` keeps only the first few).
    pub relevant_count: usize,
    /// Notifications were lost (`ENOBUFS`).
    pub overrun: bool,
}

impl Drained {
    pub fn matters(&self) -> bool {
        self.relevant_count > 0 || self.overrun
    }

    fn note(&mut self, why: String) {
        self.relevant_count += 1;
        if self.relevant.len() < 4 {
            self.relevant.push(why);
        }
    }
}

/// The two notification sockets.
pub struct Watch {
    route: RawSocket,
    /// `None` where nf_tables is not available (no module, no permission).
    nft: Option<RawSocket>,
    buf: Vec<u8>,
}

fn open(protocol: isize, groups: &[u32]) -> io::Result<RawSocket> {
    let mut sock = RawSocket::new(protocol)?;
    sock.bind(&SocketAddr::new(0, 0))?;
    for g in groups {
        sock.add_membership(*g)?;
    }
    sock.set_non_blocking(true)?;
    // SO_RCVBUFFORCE (root) goes past rmem_max; SO_RCVBUF otherwise.
    let fd = sock.as_raw_fd();
    let size = RCVBUF;
    let set = |opt| unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set(libc::SO_RCVBUFFORCE) != 0 {
        let _ = set(libc::SO_RCVBUF);
    }
    Ok(sock)
}

impl Watch {
    /// Joins the groups, in the calling thread's network namespace.
    pub fn open() -> Result<Watch> {
        let route = open(
            NETLINK_ROUTE,
            &[
                RTNLGRP_LINK,
                RTNLGRP_IPV4_IFADDR,
                RTNLGRP_IPV4_ROUTE,
                RTNLGRP_IPV4_RULE,
                RTNLGRP_IPV6_IFADDR,
                RTNLGRP_IPV6_ROUTE,
                RTNLGRP_IPV6_RULE,
            ],
        )
        .map_err(|e| Error::io("subscribing to rtnetlink notifications", e))?;
        let nft = match open(NETLINK_NETFILTER, &[NFNLGRP_NFTABLES]) {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!(
                    "no nftables notifications ({e}); firewall objects are repaired by the periodic round only"
                );
                None
            }
        };
        Ok(Watch {
            route,
            nft,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// The descriptors to poll for reading.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.route.as_raw_fd()];
        fds.extend(self.nft.as_ref().map(|s| s.as_raw_fd()));
        fds
    }

    /// Reads every queued notification of both sockets.
    pub fn drain(&mut self) -> Result<Drained> {
        let mut out = Drained::default();
        drain_one(&self.route, &mut self.buf, &mut out, route_relevance)?;
        if let Some(nft) = &self.nft {
            drain_one(nft, &mut self.buf, &mut out, nft_relevance)?;
        }
        Ok(out)
    }
}

fn drain_one(
    sock: &RawSocket,
    buf: &mut Vec<u8>,
    out: &mut Drained,
    judge: fn(Msg<'_>) -> Option<String>,
) -> Result<()> {
    loop {
        buf.clear();
        match sock.recv(buf, libc::MSG_DONTWAIT) {
            Ok(_) => {
                for msg in Msg::all(buf) {
                    out.seen += 1;
                    if let Some(why) = judge(msg) {
                        out.note(why);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => out.overrun = true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading kernel notifications", e)),
        }
    }
}

/// Whether an rtnetlink notification could concern gwsteer, and why.
pub fn route_relevance(msg: Msg<'_>) -> Option<String> {
    let b = msg.body;
    match msg.kind {
        RTM_NEWRULE | RTM_DELRULE if b.len() >= RTMSG_LEN => {
            let attrs = Attrs(&b[RTMSG_LEN..]);
            let protocol = attrs.u8(FRA_PROTOCOL).unwrap_or(0);
            let table = table_of(b, attrs);
            let family = family_name(b[0]);
            if msg.kind == RTM_DELRULE {
                Some(format!(
                    "{family} rule to table {table} deleted (protocol {protocol})"
                ))
            } else if protocol != RTPROT_GWSTEER {
                Some(format!(
                    "{family} rule to table {table} added (protocol {protocol})"
                ))
            } else {
                None
            }
        }
        RTM_NEWROUTE | RTM_DELROUTE if b.len() >= RTMSG_LEN => {
            let flags = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
            if flags & RTM_F_CLONED != 0 {
                return None;
            }
            let attrs = Attrs(&b[RTMSG_LEN..]);
            let table = table_of(b, attrs);
            let protocol = b[5];
            let family = family_name(b[0]);
            let reserved = matches!(table, 0 | 253..=255);
            if msg.kind == RTM_DELROUTE && protocol == RTPROT_GWSTEER {
                Some(format!("{family} route in table {table} deleted"))
            } else if msg.kind == RTM_NEWROUTE && protocol != RTPROT_GWSTEER && !reserved {
                Some(format!(
                    "{family} route added to table {table} (protocol {protocol})"
                ))
            } else {
                None
            }
        }
        RTM_DELLINK if b.len() >= IFINFOMSG_LEN => Some(format!(
            "link {} deleted",
            link_name(b).unwrap_or_else(|| "?".into())
        )),
        RTM_NEWLINK if b.len() >= IFINFOMSG_LEN => {
            let flags = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
            let change = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]);
            (change & IFF_UP != 0 && flags & IFF_UP == 0).then(|| {
                format!(
                    "link {} set down",
                    link_name(b).unwrap_or_else(|| "?".into())
                )
            })
        }
        RTM_DELADDR if b.len() >= IFADDRMSG_LEN => Some(format!(
            "{} address deleted from link index {}",
            family_name(b[0]),
            u32::from_ne_bytes([b[4], b[5], b[6], b[7]])
        )),
        RTM_NEWADDR => None,
        _ => None,
    }
}

/// Whether an nf_tables notification could concern gwsteer: every change
/// but the generation counter (a commit's trailer).
pub fn nft_relevance(msg: Msg<'_>) -> Option<String> {
    let subsys = msg.kind >> 8;
    let kind = msg.kind & 0xff;
    if subsys != NFNL_SUBSYS_NFTABLES || kind == NFT_MSG_NEWGEN || msg.body.len() < NFGENMSG_LEN {
        return None;
    }
    let what = match kind {
        0 | 2 => "table",
        3 | 5 => "chain",
        6 | 8 => "rule",
        9 | 11 => "set",
        12 | 14 => "set element",
        _ => "object",
    };
    let verb = match kind {
        2 | 5 | 8 | 11 | 14 | 20 | 24 => "deleted",
        _ => "added or changed",
    };
    Some(format!("nftables {what} {verb}"))
}

fn table_of(body: &[u8], attrs: Attrs<'_>) -> u32 {
    attrs
        .get(ATTR_TABLE)
        .and_then(|v| v.get(..4))
        .map(|v| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
        .unwrap_or(u32::from(body[4]))
}

fn family_name(family: u8) -> &'static str {
    match family as i32 {
        libc::AF_INET => "inet",
        libc::AF_INET6 => "inet6",
        _ => "other",
    }
}

fn link_name(body: &[u8]) -> Option<String> {
    Attrs(&body[IFINFOMSG_LEN..]).string(IFLA_IFNAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole netlink message: header, `fixed` header bytes, attributes.
    fn message(kind: u16, fixed: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = fixed.to_vec();
        for (t, v) in attrs {
            let len = 4 + v.len();
            body.extend_from_slice(&(len as u16).to_ne_bytes());
            body.extend_from_slice(&t.to_ne_bytes());
            body.extend_from_slice(v);
            while !body.len().is_multiple_of(4) {
                body.push(0);
            }
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&body);
        m
    }

    fn judge(bytes: &[u8], f: fn(Msg<'_>) -> Option<String>) -> Option<String> {
        f(Msg::of(bytes).expect("a message"))
    }

    fn rtmsg(family: u8, table: u8, protocol: u8) -> [u8; 12] {
        [family, 32, 0, 0, table, protocol, 0, 1, 0, 0, 0, 0]
    }

    #[test]
    fn rules_deleted_matter_ours_added_do_not() {
        let v4 = libc::AF_INET as u8;
        let ours = [RTPROT_GWSTEER];
        let del = message(
            RTM_DELRULE,
            &rtmsg(v4, 100, 0),
            &[(FRA_PROTOCOL, &ours), (ATTR_TABLE, &100u32.to_ne_bytes())],
        );
        assert_eq!(
            judge(&del, route_relevance).as_deref(),
            Some("inet rule to table 100 deleted (protocol 211)")
        );
        let add = message(RTM_NEWRULE, &rtmsg(v4, 100, 0), &[(FRA_PROTOCOL, &ours)]);
        assert_eq!(judge(&add, route_relevance), None);
        let foreign = message(RTM_NEWRULE, &rtmsg(v4, 100, 0), &[]);
        assert!(judge(&foreign, route_relevance).unwrap().contains("added"));
    }

    #[test]
    fn routes_matter_when_ours_go_or_others_arrive_outside_main() {
        let v6 = libc::AF_INET6 as u8;
        let gone = message(RTM_DELROUTE, &rtmsg(v6, 100, RTPROT_GWSTEER), &[]);
        assert_eq!(
            judge(&gone, route_relevance).as_deref(),
            Some("inet6 route in table 100 deleted")
        );
        // Ours being made, and main/local traffic of pods coming and going.
        for (kind, table, proto) in [
            (RTM_NEWROUTE, 100, RTPROT_GWSTEER),
            (RTM_NEWROUTE, 254, 3),
            (RTM_DELROUTE, 254, 3),
            (RTM_NEWROUTE, 255, 2),
        ] {
            let m = message(kind, &rtmsg(v6, table, proto), &[]);
            assert_eq!(judge(&m, route_relevance), None, "{kind} {table} {proto}");
        }
        let imposter = message(
            RTM_NEWROUTE,
            &rtmsg(v6, 252, 3),
            &[(ATTR_TABLE, &1000u32.to_ne_bytes())],
        );
        assert_eq!(
            judge(&imposter, route_relevance).as_deref(),
            Some("inet6 route added to table 1000 (protocol 3)")
        );
    }

    #[test]
    fn links_deleted_or_downed_matter() {
        let mut info = [0u8; 16];
        let name = b"eth1\0";
        let del = message(RTM_DELLINK, &info, &[(IFLA_IFNAME, name)]);
        assert_eq!(
            judge(&del, route_relevance).as_deref(),
            Some("link eth1 deleted")
        );
        info[12] = IFF_UP as u8; // change: IFF_UP, flags: down
        let down = message(RTM_NEWLINK, &info, &[(IFLA_IFNAME, name)]);
        assert_eq!(
            judge(&down, route_relevance).as_deref(),
            Some("link eth1 set down")
        );
        info[8] = IFF_UP as u8; // now up
        let up = message(RTM_NEWLINK, &info, &[(IFLA_IFNAME, name)]);
        assert_eq!(judge(&up, route_relevance), None);
    }

    #[test]
    fn nftables_changes_matter_but_the_generation() {
        let gen_msg = message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN, &[0; 4], &[]);
        assert_eq!(judge(&gen_msg, nft_relevance), None);
        let del = message((NFNL_SUBSYS_NFTABLES << 8) | 14, &[0; 4], &[]);
        assert_eq!(
            judge(&del, nft_relevance).as_deref(),
            Some("nftables set element deleted")
        );
    }

    #[test]
    fn a_deleted_rule_is_seen_on_the_socket() {
        crate::kernel::netns::in_new_netns(|| {
            let mut w = Watch::open().expect("watch");
            assert!(!w.drain().unwrap().matters(), "quiet at first");
            let ip = |args: &[&str]| {
                let ok = std::process::Command::new("ip")
                    .args(args)
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "ip {args:?}");
            };
            ip(&[
                "rule", "add", "pref", "1000", "from", "10.1.2.3", "table", "100", "proto", "211",
            ]);
            assert!(!w.drain().unwrap().matters(), "our own rule made: quiet");
            ip(&["rule", "del", "pref", "1000"]);
            let d = w.drain().unwrap();
            assert_eq!(
                d.relevant,
                vec!["inet rule to table 100 deleted (protocol 211)".to_string()],
                "{d:?}"
            );
        });
    }
}
