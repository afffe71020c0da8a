//! A small synchronous nfnetlink (`NETLINK_NETFILTER`) client: requests of
//! one subsystem with hand-built attributes, answers split into messages and
//! attributes. Enough for the ipset protocol and for asking whether the
//! kernel answers nf_tables at all; no crate speaks either.
//!
//! The socket belongs to the network namespace of the thread that opened it.

use std::io;

use rtnetlink::sys::{Socket, protocols::NETLINK_NETFILTER};

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_ROOT | NLM_F_MATCH`.
pub const NLM_F_DUMP: u16 = 0x300;

pub const NLA_F_NESTED: u16 = 0x8000;
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// `recv(2)` flag: return the datagram's real length even when truncated.
const MSG_TRUNC: i32 = 0x20;
/// Large enough for any message the kernel builds for a dump.
const RECV_BUF: usize = 64 * 1024;

/// `AF_INET`, the family most nfnetlink requests carry in their header.
pub const AF_INET: u8 = 2;

/// A failed exchange: the kernel's errno, or a local socket problem.
#[derive(Debug)]
pub enum NlError {
    /// The kernel answered with this (positive) errno.
    Kernel(i32),
    Io(io::Error),
    /// The answer did not parse.
    Malformed(&'static str),
}

impl std::fmt::Display for NlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NlError::Kernel(errno) => write!(f, "{}", io::Error::from_raw_os_error(*errno)),
            NlError::Io(e) => write!(f, "netlink socket: {e}"),
            NlError::Malformed(what) => write!(f, "malformed netlink answer: {what}"),
        }
    }
}

/// Attributes being built: `nla_len`, `nla_type`, payload padded to 4.
#[derive(Default)]
pub struct Attrs(Vec<u8>);

impl Attrs {
    pub fn new() -> Attrs {
        Attrs(Vec::new())
    }

    pub fn bytes(&mut self, kind: u16, payload: &[u8]) -> &mut Attrs {
        let len = 4 + payload.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(payload);
        self.pad();
        self
    }

    pub fn u8(&mut self, kind: u16, v: u8) -> &mut Attrs {
        self.bytes(kind, &[v])
    }

    /// A host-order u32.
    pub fn u32(&mut self, kind: u16, v: u32) -> &mut Attrs {
        self.bytes(kind, &v.to_ne_bytes())
    }

    /// A NUL-terminated string.
    pub fn str(&mut self, kind: u16, s: &str) -> &mut Attrs {
        let mut payload = Vec::with_capacity(s.len() + 1);
        payload.extend_from_slice(s.as_bytes());
        payload.push(0);
        self.bytes(kind, &payload)
    }

    pub fn nested(&mut self, kind: u16, fill: impl FnOnce(&mut Attrs)) -> &mut Attrs {
        let start = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        fill(self);
        let len = (self.0.len() - start) as u16;
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.0[start + 2..start + 4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }
}

/// The attributes of a message or of a nested attribute, type flags masked
/// off. Stops quietly at a truncated tail.
pub fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((kind, &buf[4..len]));
        let next = len.next_multiple_of(4);
        buf = buf.get(next..).unwrap_or(&[]);
    }
    out
}

pub fn find<'a>(attrs: &[(u16, &'a [u8])], kind: u16) -> Option<&'a [u8]> {
    attrs.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v)
}

pub fn get_u8(attrs: &[(u16, &[u8])], kind: u16) -> Option<u8> {
    find(attrs, kind).and_then(|v| v.first().copied())
}

/// A big-endian (network order) u32.
pub fn get_be32(attrs: &[(u16, &[u8])], kind: u16) -> Option<u32> {
    find(attrs, kind)
        .and_then(|v| v.get(..4))
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

pub fn get_str(attrs: &[(u16, &[u8])], kind: u16) -> Option<String> {
    find(attrs, kind).map(|v| {
        let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
        String::from_utf8_lossy(&v[..end]).into_owned()
    })
}

/// One nfnetlink socket.
pub struct Nfnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Nfnl {
    pub fn open() -> io::Result<Nfnl> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        Ok(Nfnl {
            sock,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Sends one request and collects the payloads (after the 4-byte
    /// `nfgenmsg`) of every data message answering it. A request with
    /// `NLM_F_ACK` ends at the kernel's acknowledgement, a dump at
    /// `NLMSG_DONE`; an error ends either. `EAGAIN` (nfnetlink has just
    /// loaded the subsystem's module and asks for a replay) is retried.
    pub fn request(
        &mut self,
        subsys: u8,
        cmd: u8,
        flags: u16,
        family: u8,
        attrs: &Attrs,
    ) -> Result<Vec<Vec<u8>>, NlError> {
        const EAGAIN: i32 = 11;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.exchange(subsys, cmd, flags, family, attrs) {
                Err(NlError::Kernel(EAGAIN)) if attempts < 3 => continue,
                other => return other,
            }
        }
    }

    fn exchange(
        &mut self,
        subsys: u8,
        cmd: u8,
        flags: u16,
        family: u8,
        attrs: &Attrs,
    ) -> Result<Vec<Vec<u8>>, NlError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.0.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&(((subsys as u16) << 8) | cmd as u16).to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[family, 0, 0, 0]);
        msg.extend_from_slice(&attrs.0);
        self.sock.send(&msg, 0).map_err(NlError::Io)?;

        let mut answers = Vec::new();
        loop {
            self.buf.clear();
            let n = self
                .sock
                .recv(&mut self.buf, MSG_TRUNC)
                .map_err(NlError::Io)?;
            if n > self.buf.len() {
                return Err(NlError::Malformed("message larger than the receive buffer"));
            }
            let mut rest = &self.buf[..n];
            while rest.len() >= NLMSG_HDRLEN {
                let mlen = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if mlen < NLMSG_HDRLEN || mlen > rest.len() {
                    return Err(NlError::Malformed("bad nlmsg_len"));
                }
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                let mseq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
                let payload = &rest[NLMSG_HDRLEN..mlen];
                rest = rest.get(mlen.next_multiple_of(4)..).unwrap_or(&[]);
                if mseq != seq {
                    continue;
                }
                match kind {
                    NLMSG_ERROR | NLMSG_DONE => {
                        let code = payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(0);
                        if code < 0 {
                            return Err(NlError::Kernel(-code));
                        }
                        return Ok(answers);
                    }
                    _ => answers.push(payload.get(NFGENMSG_LEN..).unwrap_or(&[]).to_vec()),
                }
            }
        }
    }
}

/// nf_tables' subsystem and its "get generation" request: the cheapest
/// question nf_tables answers.
const NFNL_SUBSYS_NFTABLES: u8 = 10;
const NFT_MSG_GETGEN: u8 = 16;

/// Does the kernel answer nf_tables requests in this namespace?
pub fn nftables_answers(nl: &mut Nfnl) -> bool {
    nl.request(
        NFNL_SUBSYS_NFTABLES,
        NFT_MSG_GETGEN,
        NLM_F_ACK,
        0,
        &Attrs::new(),
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_with_nesting_and_padding() {
        let mut a = Attrs::new();
        a.u8(1, 7).str(2, "gws-1").nested(7, |d| {
            d.nested(1, |ip| {
                ip.bytes(1 | NLA_F_NET_BYTEORDER, &[10, 0, 0, 1]);
            });
            d.u8(3, 32);
        });
        let top = attrs(&a.0);
        assert_eq!(get_u8(&top, 1), Some(7));
        assert_eq!(get_str(&top, 2).as_deref(), Some("gws-1"));
        let data = attrs(find(&top, 7).unwrap());
        let ip = attrs(find(&data, 1).unwrap());
        assert_eq!(find(&ip, 1), Some(&[10u8, 0, 0, 1][..]));
        assert_eq!(get_u8(&data, 3), Some(32));
        assert!(a.0.len().is_multiple_of(4));
    }
}
