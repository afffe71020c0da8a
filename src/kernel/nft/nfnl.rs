//! nfnetlink (`NETLINK_NETFILTER`) plumbing of the nftables backend:
//! messages built in one buffer, attributes parsed in place, and the one
//! netlink socket of [`crate::kernel::nl`] (which reads the answers, the kernel's
//! errors and extended acks) opened for this protocol. What a request means
//! and when its answer ends belong to the protocol on top (nf_tables in
//! `nftables::nfnl`).
//!
//! A netlink socket belongs for life to the network namespace of the thread
//! that opened it.
//!
//! Wire format (all host byte order except where a subsystem says
//! otherwise): `nlmsghdr` (16 bytes), `nfgenmsg` (family, version 0,
//! resource id in network order), then attributes (`nlattr`: u16 length,
//! u16 type, payload padded to 4). Strings are NUL-terminated, as libnftnl
//! sends them.

use std::time::Duration;

use crate::kernel::nl::{self, NETLINK_NETFILTER};
pub use crate::kernel::nl::{
    Attrs, Ends, Msg, NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST,
    NLMSG_ERROR, NlError, Step, c_string,
};

pub const NFGENMSG_LEN: usize = 4;

/// Netlink messages being built, back to back in one buffer.
#[derive(Default)]
pub struct MsgBuf {
    bytes: Vec<u8>,
    /// Where the message being built starts.
    start: usize,
}

impl MsgBuf {
    /// Starts a message: `nlmsghdr` (length set by [`MsgBuf::end`]) and
    /// `nfgenmsg`.
    pub fn begin(&mut self, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> &mut Self {
        self.start = self.bytes.len();
        self.bytes.extend_from_slice(&0u32.to_ne_bytes()); // length, set in end()
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(&flags.to_ne_bytes());
        self.bytes.extend_from_slice(&seq.to_ne_bytes());
        self.bytes.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        self.bytes.push(family);
        self.bytes.push(0); // NFNETLINK_V0
        self.bytes.extend_from_slice(&res_id.to_be_bytes());
        self
    }

    /// Ends the message begun last.
    pub fn end(&mut self) {
        let len = (self.bytes.len() - self.start) as u32;
        self.bytes[self.start..self.start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn attr_header(&mut self, kind: u16, payload_len: usize) {
        self.bytes
            .extend_from_slice(&((4 + payload_len) as u16).to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
    }

    pub fn bytes(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        self.attr_header(kind, value.len());
        self.bytes.extend_from_slice(value);
        self.pad()
    }

    /// A NUL-terminated string.
    pub fn str(&mut self, kind: u16, value: &str) -> &mut Self {
        self.attr_header(kind, value.len() + 1);
        self.bytes.extend_from_slice(value.as_bytes());
        self.bytes.push(0);
        self.pad()
    }

    /// A nested attribute holding what `fill` adds.
    pub fn nested(&mut self, kind: u16, fill: impl FnOnce(&mut Self)) -> &mut Self {
        let at = self.bytes.len();
        self.attr_header(kind | NLA_F_NESTED, 0);
        fill(self);
        let len = (self.bytes.len() - at) as u16;
        self.bytes[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn pad(&mut self) -> &mut Self {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
        self
    }
}

/// A `NETLINK_NETFILTER` socket: the one netlink socket ([`crate::kernel::nl`])
/// carrying nfnetlink messages, in the namespace it was opened in.
pub struct Socket(nl::Socket);

impl Socket {
    /// Opens and binds the socket on the calling thread (so in its network
    /// namespace); sequence numbers start after `seq`.
    ///
    /// Its close hands the last reference to the kernel
    /// ([`nl::Socket::release_in_kernel`]): releasing a `NETLINK_NETFILTER`
    /// socket flushes nf_tables' destroy work (`nft_rcv_nl_event`), so the
    /// closing process would wait out the RCU grace period of any earlier
    /// deleting commit (10–15 ms here) although the deletion is long
    /// committed and visible.
    pub fn open(seq: u32) -> Result<Socket, NlError> {
        let mut sock = nl::Socket::open(NETLINK_NETFILTER, seq)?;
        sock.release_in_kernel();
        Ok(Socket(sock))
    }

    /// Talks to the kernel only, with extended acks, and gives up on an
    /// answer after `timeout` (see [`nl::Socket::connect_kernel`]).
    pub fn connect_kernel(&mut self, timeout: Duration) -> Result<(), NlError> {
        self.0.connect_kernel(timeout)
    }

    pub fn next_seq(&mut self) -> u32 {
        self.0.next_seq()
    }

    /// Sends `msg`, then hands every message of the answers to `each` until
    /// it says the exchange is over (`Ok(true)`) or fails.
    pub fn exchange(
        &mut self,
        msg: &MsgBuf,
        each: impl FnMut(Msg<'_>) -> Result<bool, NlError>,
    ) -> Result<(), NlError> {
        self.0.exchange(msg.as_bytes(), each)
    }

    /// Sends request `msg` (numbered `seq`); the bodies (after the
    /// `nlmsghdr`) of the data messages answering it up to where it `ends`.
    pub fn request(&mut self, msg: &MsgBuf, seq: u32, ends: Ends) -> Result<Vec<Vec<u8>>, NlError> {
        Ok(bodies(self.0.request(msg.as_bytes(), seq, ends)?.messages))
    }

    /// A dump of the request `build` makes for a sequence number, retried
    /// while the kernel marks it interrupted; (type, body) of each message.
    pub fn dump(
        &mut self,
        build: impl Fn(&mut MsgBuf, u32),
    ) -> Result<Vec<(u16, Vec<u8>)>, NlError> {
        let answer = self.0.dump(|seq| {
            let mut msg = MsgBuf::default();
            build(&mut msg, seq);
            msg.bytes
        })?;
        Ok(answer
            .iter()
            .filter_map(|whole| Msg::of(whole).map(|m| (m.kind, m.body.to_vec())))
            .collect())
    }
}

fn bodies(messages: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    messages
        .iter()
        .filter_map(|whole| Msg::of(whole).map(|m| m.body.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::nl::{NLA_F_NET_BYTEORDER, NLMSG_HDRLEN};

    #[test]
    fn attributes_round_trip_with_nesting_and_padding() {
        let mut m = MsgBuf::default();
        m.begin(0x0609, NLM_F_REQUEST, 7, 2, 0);
        m.bytes(1, &[7]).str(2, "gws-1").nested(7, |d| {
            d.nested(1, |ip| {
                ip.bytes(1 | NLA_F_NET_BYTEORDER, &[10, 0, 0, 1]);
            });
            d.bytes(3, &[32]);
        });
        m.end();
        let b = m.as_bytes();
        assert!(b.len().is_multiple_of(4));
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        let top = Attrs(&b[NLMSG_HDRLEN + NFGENMSG_LEN..]);
        assert_eq!(top.get(1), Some(&[7u8][..]));
        assert_eq!(top.string(2).as_deref(), Some("gws-1"));
        let data = top.nested(7).unwrap();
        let ip = data.nested(1).unwrap();
        assert_eq!(ip.get(1), Some(&[10u8, 0, 0, 1][..]));
        assert_eq!(data.get(3), Some(&[32u8][..]));
    }
}
