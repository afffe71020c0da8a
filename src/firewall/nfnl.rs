//! nfnetlink (`NETLINK_NETFILTER`) plumbing of the nftables backend: one
//! blocking socket, messages built in one buffer, attributes parsed in
//! place, the kernel's error and extended-ack answers. What a request means
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

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_sys::{Socket as RawSocket, SocketAddr};

/// `NETLINK_NETFILTER`.
const NETLINK_NETFILTER: isize = 12;

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_ROOT | NLM_F_MATCH`.
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_CREATE: u16 = 0x400;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;

pub const NLA_F_NESTED: u16 = 0x8000;
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
const NLMSGERR_ATTR_MSG: u16 = 1;

const NLMSG_HDRLEN: usize = 16;
pub const NFGENMSG_LEN: usize = 4;

/// Larger than any datagram the kernel sends a netlink socket (dumps are
/// capped at 32 KiB).
const RECV_BUFFER: usize = 64 * 1024;

/// What a socket call was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Open,
    Bind,
    Connect,
    SetTimeout,
    Send,
    Receive,
}

/// A failed exchange. Each protocol words these its own way.
#[derive(Debug)]
pub enum NlError {
    /// The kernel refused: its (positive) errno and the extended ack's
    /// text, if any.
    Kernel { errno: i32, ext: Option<String> },
    /// A socket call failed.
    Socket(Step, io::Error),
    /// The kernel took only `sent` of `len` bytes.
    ShortSend { sent: usize, len: usize },
    /// No answer within the socket's receive timeout.
    Timeout(Duration),
    /// A datagram of this many bytes did not fit the receive buffer.
    TooLarge(usize),
    /// A message whose `nlmsg_len` does not fit the datagram.
    BadLength,
    /// An `NLMSG_ERROR` too short to hold its error code.
    TruncatedError,
    /// An answer that the protocol on top could not read.
    Malformed(&'static str),
    /// Anything else the protocol on top has to say.
    Other(String),
}

impl NlError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            NlError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    pub fn is_enoent(&self) -> bool {
        self.errno() == Some(libc::ENOENT)
    }
}

const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// One message of an answer: its type, flags and sequence number, and its
/// body after the `nlmsghdr` (starting with the `nfgenmsg` for data).
#[derive(Clone, Copy)]
pub struct Msg<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub body: &'a [u8],
}

impl<'a> Msg<'a> {
    /// The (negative) error code of an `NLMSG_ERROR` (0 for an ack) or
    /// `NLMSG_DONE`, if the body holds one.
    pub fn code(self) -> Option<i32> {
        let b = self.body.get(..4)?;
        Some(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An `NLMSG_ERROR`: `Ok` for an ack, else the kernel's errno and
    /// extended-ack text.
    pub fn ack(self) -> Result<(), NlError> {
        let code = self.code().ok_or(NlError::TruncatedError)?;
        if code == 0 {
            return Ok(());
        }
        Err(NlError::Kernel {
            errno: -code,
            ext: extack(self.flags, &self.body[4..]),
        })
    }
}

/// The extended-ack text after the error code: the failed request's header
/// (capped) or whole request (uncapped), then attributes.
fn extack(flags: u16, echoed: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let offset = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        align(u32::from_ne_bytes(echoed.get(0..4)?.try_into().ok()?) as usize)
    };
    let text = Attrs(echoed.get(offset..)?).get(NLMSGERR_ATTR_MSG)?;
    let text = text.split(|b| *b == 0).next()?;
    let text = String::from_utf8_lossy(text).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// A run of netlink attributes, read in place.
#[derive(Clone, Copy)]
pub struct Attrs<'a>(pub &'a [u8]);

impl<'a> Attrs<'a> {
    /// (type without flags, payload) of each attribute; stops quietly at
    /// the first malformed one (a truncated tail).
    pub fn iter(self) -> impl Iterator<Item = (u16, &'a [u8])> {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            if rest.len() < 4 {
                return None;
            }
            let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
            let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
            if len < 4 || len > rest.len() {
                return None;
            }
            let payload = &rest[4..len];
            rest = rest.get(align(len)..).unwrap_or_default();
            Some((kind, payload))
        })
    }

    /// The first attribute of this type.
    pub fn get(self, kind: u16) -> Option<&'a [u8]> {
        self.iter().find(|(k, _)| *k == kind).map(|(_, v)| v)
    }

    /// A string, up to its NUL.
    pub fn string(self, kind: u16) -> Option<String> {
        Some(c_string(self.get(kind)?))
    }

    /// A big-endian (network order) u32.
    pub fn be_u32(self, kind: u16) -> Option<u32> {
        let b = self.get(kind)?.get(..4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// The text of a NUL-terminated (or unterminated) C string.
pub fn c_string(raw: &[u8]) -> String {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

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

/// One `NETLINK_NETFILTER` socket, in the namespace it was opened in.
/// Requests are strictly one at a time; answers are matched by sequence
/// number by the protocol on top, so a late answer to an earlier request
/// is skipped.
pub struct Socket {
    sock: RawSocket,
    seq: u32,
    timeout: Option<Duration>,
    buf: Vec<u8>,
}

impl Socket {
    /// Opens and binds the socket on the calling thread (so in its network
    /// namespace); sequence numbers start after `seq`.
    pub fn open(seq: u32) -> Result<Socket, NlError> {
        let mut sock =
            RawSocket::new(NETLINK_NETFILTER).map_err(|e| NlError::Socket(Step::Open, e))?;
        sock.bind_auto()
            .map_err(|e| NlError::Socket(Step::Bind, e))?;
        Ok(Socket {
            sock,
            seq,
            timeout: None,
            buf: Vec::with_capacity(RECV_BUFFER),
        })
    }

    /// Talks to the kernel only, asks for extended acks (the kernel's
    /// reason for a refusal) capped (so a refusal does not echo the whole
    /// request back; both best effort), and gives up on an answer after
    /// `timeout`.
    pub fn connect_kernel(&mut self, timeout: Duration) -> Result<(), NlError> {
        self.sock
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| NlError::Socket(Step::Connect, e))?;
        let _ = self.sock.set_ext_ack(true);
        let _ = self.sock.set_cap_ack(true);
        set_receive_timeout(&self.sock, timeout)
            .map_err(|e| NlError::Socket(Step::SetTimeout, e))?;
        self.timeout = Some(timeout);
        Ok(())
    }

    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&mut self, msg: &MsgBuf) -> Result<(), NlError> {
        let bytes = msg.as_bytes();
        let sent = self
            .sock
            .send(bytes, 0)
            .map_err(|e| NlError::Socket(Step::Send, e))?;
        if sent != bytes.len() {
            return Err(NlError::ShortSend {
                sent,
                len: bytes.len(),
            });
        }
        Ok(())
    }

    /// Reads one datagram; calls `each` for every message in it. Stops
    /// early when `each` says the exchange is over.
    fn receive(
        &mut self,
        each: &mut impl FnMut(Msg<'_>) -> Result<bool, NlError>,
    ) -> Result<bool, NlError> {
        self.buf.clear();
        let n = self
            .sock
            .recv(&mut self.buf, libc::MSG_TRUNC)
            .map_err(|e| match self.timeout {
                Some(timeout)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    NlError::Timeout(timeout)
                }
                _ => NlError::Socket(Step::Receive, e),
            })?;
        if n > self.buf.len() {
            return Err(NlError::TooLarge(n));
        }
        let mut rest: &[u8] = &self.buf;
        while rest.len() >= NLMSG_HDRLEN {
            let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if len < NLMSG_HDRLEN || len > rest.len() {
                return Err(NlError::BadLength);
            }
            let msg = Msg {
                kind: u16::from_ne_bytes([rest[4], rest[5]]),
                flags: u16::from_ne_bytes([rest[6], rest[7]]),
                seq: u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]),
                body: &rest[NLMSG_HDRLEN..len],
            };
            if each(msg)? {
                return Ok(true);
            }
            rest = rest.get(align(len)..).unwrap_or_default();
        }
        Ok(false)
    }

    /// Sends `msg`, then hands every message of the answers to `each` until
    /// it says the exchange is over (`Ok(true)`) or fails.
    pub fn exchange(
        &mut self,
        msg: &MsgBuf,
        mut each: impl FnMut(Msg<'_>) -> Result<bool, NlError>,
    ) -> Result<(), NlError> {
        self.send(msg)?;
        while !self.receive(&mut each)? {}
        Ok(())
    }
}

fn set_receive_timeout(sock: &RawSocket, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: the fd is a live socket owned by `sock`; `tv` is a valid
    // `timeval` that outlives the call, and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let data = Attrs(top.get(7).unwrap());
        let ip = Attrs(data.get(1).unwrap());
        assert_eq!(ip.get(1), Some(&[10u8, 0, 0, 1][..]));
        assert_eq!(data.get(3), Some(&[32u8][..]));
    }

    #[test]
    fn errors_carry_the_extended_ack_text() {
        // A capped ack: code, the request's header, then NLMSGERR_ATTR_MSG.
        let mut body = (-libc::ENOENT).to_ne_bytes().to_vec();
        body.extend_from_slice(&[0; NLMSG_HDRLEN]);
        let text = b"no such set\0";
        body.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        body.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        body.extend_from_slice(text);
        let msg = Msg {
            kind: NLMSG_ERROR,
            flags: NLM_F_CAPPED | NLM_F_ACK_TLVS,
            seq: 1,
            body: &body,
        };
        match msg.ack() {
            Err(NlError::Kernel { errno, ext }) => {
                assert_eq!(errno, libc::ENOENT);
                assert_eq!(ext.as_deref(), Some("no such set"));
            }
            other => panic!("{other:?}"),
        }
        let ack = 0i32.to_ne_bytes();
        let msg = Msg { body: &ack, ..msg };
        assert!(msg.ack().is_ok());
    }
}
