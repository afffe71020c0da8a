//! The one netlink socket: blocking, one request at a time, for every
//! netlink protocol gwsteer speaks — rtnetlink (rules, routes, links,
//! addresses, FDB entries; messages built with `netlink-packet-route`) and
//! nfnetlink (nf_tables; messages built in place by `firewall::nfnl`).
//!
//! It opens the socket, sends a request, reads the answer up to its end (the
//! kernel's ack, a single reply or `NLMSG_DONE`), turns refusals into the
//! errno and the extended ack's text (`NETLINK_EXT_ACK`, capped), and
//! retries a dump the kernel marks `NLM_F_DUMP_INTR`. What a message means
//! belongs to the protocol on top, and so does the wording of its errors.
//!
//! A netlink socket belongs for life to the network namespace of the thread
//! that opened it, whichever thread uses it later: to talk to a pod's
//! namespace, open the socket inside it ([`crate::kernel::netns::Netns::run`]).
//!
//! Wire format (host byte order): `nlmsghdr` (u32 length, u16 type, u16
//! flags, u32 sequence number, u32 port id), then the protocol's header and
//! attributes (`nlattr`: u16 length, u16 type, payload padded to 4).

use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::time::Duration;

use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use netlink_sys::{Socket as RawSocket, SocketAddr};

mod device;
mod release;

/// `NETLINK_ROUTE`.
pub const NETLINK_ROUTE: isize = 0;
/// `NETLINK_NETFILTER`.
pub const NETLINK_NETFILTER: isize = 12;

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_ROOT | NLM_F_MATCH`.
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_CAPPED: u16 = 0x100;
pub const NLM_F_ACK_TLVS: u16 = 0x200;

pub const NLA_F_NESTED: u16 = 0x8000;
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
/// `NLMSGERR_ATTR_MSG`: the extended ack's human-readable text.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// `sizeof(struct nlmsghdr)`.
pub const NLMSG_HDRLEN: usize = 16;

/// Larger than any datagram the kernel sends a netlink socket (dumps are
/// capped at 32 KiB).
const RECV_BUFFER: usize = 64 * 1024;
/// A dump interrupted by concurrent changes (`NLM_F_DUMP_INTR`) is retried
/// this many times in all.
pub const DUMP_ATTEMPTS: usize = 3;

/// What a socket call was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Open,
    Bind,
    Connect,
    SetTimeout,
    /// `NETLINK_GET_STRICT_CHK` (rtnetlink).
    StrictCheck,
    Send,
    Receive,
    /// `SIOCGIFINDEX` / `SIOCGIFNAME` (`device.rs`).
    DeviceLookup,
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
    /// An answer that could not be read.
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

/// One message of an answer: its type, flags and sequence number, its body
/// after the `nlmsghdr`, and the whole message (header included).
#[derive(Clone, Copy)]
pub struct Msg<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub body: &'a [u8],
    pub whole: &'a [u8],
}

impl<'a> Msg<'a> {
    /// The first message of `bytes` and what follows it; `None` when no
    /// whole message is left.
    fn split(bytes: &'a [u8]) -> Result<Option<(Msg<'a>, &'a [u8])>, NlError> {
        if bytes.len() < NLMSG_HDRLEN {
            return Ok(None);
        }
        let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len < NLMSG_HDRLEN || len > bytes.len() {
            return Err(NlError::BadLength);
        }
        let msg = Msg {
            kind: u16::from_ne_bytes([bytes[4], bytes[5]]),
            flags: u16::from_ne_bytes([bytes[6], bytes[7]]),
            seq: u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            body: &bytes[NLMSG_HDRLEN..len],
            whole: &bytes[..len],
        };
        Ok(Some((msg, bytes.get(align(len)..).unwrap_or_default())))
    }

    /// Every whole message of one datagram, in order; stops at the first
    /// malformed one (multicast notifications, read by `watch`).
    pub fn all(bytes: &'a [u8]) -> impl Iterator<Item = Msg<'a>> {
        let mut rest = bytes;
        std::iter::from_fn(move || {
            let (msg, next) = Msg::split(rest).ok().flatten()?;
            rest = next;
            Some(msg)
        })
    }

    /// A message as [`Socket::request`] hands it out (whole).
    pub fn of(whole: &'a [u8]) -> Option<Msg<'a>> {
        Msg::split(whole).ok().flatten().map(|(msg, _)| msg)
    }

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
            ext: extack_of_error(self.flags, &self.body[4..]),
        })
    }

    /// An `NLMSG_DONE`: `Ok` unless the dump failed (a negative code,
    /// followed by the extended ack's attributes).
    fn done(self) -> Result<(), NlError> {
        match self.code() {
            Some(code) if code < 0 => Err(NlError::Kernel {
                errno: -code,
                ext: extack_text(Attrs(&self.body[4..])),
            }),
            _ => Ok(()),
        }
    }
}

/// The extended-ack text of an `NLMSG_ERROR` after its error code: the
/// failed request's header (capped) or whole request (uncapped), then
/// attributes.
fn extack_of_error(flags: u16, echoed: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let offset = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        align(u32::from_ne_bytes(echoed.get(0..4)?.try_into().ok()?) as usize)
    };
    extack_text(Attrs(echoed.get(offset..)?))
}

/// `NLMSGERR_ATTR_MSG` among an extended ack's attributes.
fn extack_text(attrs: Attrs<'_>) -> Option<String> {
    let text = attrs.get(NLMSGERR_ATTR_MSG)?;
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

    /// The attributes nested in the first attribute of this type.
    pub fn nested(self, kind: u16) -> Option<Attrs<'a>> {
        self.get(kind).map(Attrs)
    }

    /// A string, up to its NUL.
    pub fn string(self, kind: u16) -> Option<String> {
        Some(c_string(self.get(kind)?))
    }

    pub fn u8(self, kind: u16) -> Option<u8> {
        self.get(kind)?.first().copied()
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

/// Where the answer to a request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ends {
    /// At the kernel's ack (`NLM_F_ACK`): a change.
    Ack,
    /// At the single reply (or an error): a get by key.
    Reply,
    /// At `NLMSG_DONE`: a dump.
    Done,
}

/// The data messages answering one request (whole, header included).
pub struct Answer {
    pub messages: Vec<Vec<u8>>,
    /// The kernel marked the dump `NLM_F_DUMP_INTR`: it may be inconsistent.
    pub interrupted: bool,
}

/// One netlink socket, in the namespace it was opened in. Requests are
/// strictly one at a time; answers are matched by sequence number, so a
/// late answer to an earlier request (one that timed out) is skipped.
pub struct Socket {
    /// Taken out only by `drop`.
    sock: ManuallyDrop<RawSocket>,
    seq: u32,
    timeout: Option<Duration>,
    buf: Vec<u8>,
    /// Whether `drop` hands the socket's release to the kernel.
    hand_over: bool,
    /// Requests sent so far (how many round trips a caller cost; tests).
    #[cfg(test)]
    sent: u64,
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: `sock` is never used again: this is the end of `self`.
        let raw = unsafe { ManuallyDrop::take(&mut self.sock) };
        if self.hand_over {
            // SAFETY: `into_raw_fd` gives up the socket's only descriptor.
            let fd = unsafe { OwnedFd::from_raw_fd(raw.into_raw_fd()) };
            if let Err(e) = release::hand_to_kernel(fd) {
                log::debug!("netlink socket released on close (may wait): {e}");
            }
        }
    }
}

impl Socket {
    /// Opens and binds a socket of netlink `protocol` on the calling thread
    /// (so in its network namespace); sequence numbers start after `seq`.
    pub fn open(protocol: isize, seq: u32) -> Result<Socket, NlError> {
        let mut sock = RawSocket::new(protocol).map_err(|e| NlError::Socket(Step::Open, e))?;
        sock.bind_auto()
            .map_err(|e| NlError::Socket(Step::Bind, e))?;
        Ok(Socket {
            sock: ManuallyDrop::new(sock),
            seq,
            timeout: None,
            buf: Vec::with_capacity(RECV_BUFFER),
            hand_over: false,
            #[cfg(test)]
            sent: 0,
        })
    }

    /// On drop, the socket's last reference goes to the kernel, and its
    /// release (with whatever the protocol does then) runs there instead of
    /// in this process's `close` or exit; see [`release::hand_to_kernel`].
    pub fn release_in_kernel(&mut self) {
        self.hand_over = true;
    }

    /// Talks to the kernel only, asks for extended acks (the kernel's
    /// reason for a refusal) capped (so a refusal does not echo the whole
    /// request back; both best effort: kernels without them still work,
    /// with terser errors), and gives up on an answer after `timeout`.
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

    /// rtnetlink: `NETLINK_GET_STRICT_CHK`, so that the kernel honours the
    /// filters of a dump request (a route dump of one table) instead of
    /// ignoring them, like `rtnl_set_strict_dump()` of iproute2.
    pub fn set_strict_check(&mut self) -> Result<(), NlError> {
        self.sock
            .set_netlink_get_strict_chk(true)
            .map_err(|e| NlError::Socket(Step::StrictCheck, e))
    }

    /// How many requests this socket has sent.
    #[cfg(test)]
    pub fn requests(&self) -> u64 {
        self.sent
    }

    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), NlError> {
        #[cfg(test)]
        {
            self.sent += 1;
        }
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
        while let Some((msg, next)) = Msg::split(rest)? {
            if each(msg)? {
                return Ok(true);
            }
            rest = next;
        }
        Ok(false)
    }

    /// Sends `bytes` (one or more messages), then hands every message of
    /// the answers to `each` until it says the exchange is over
    /// (`Ok(true)`) or fails.
    pub fn exchange(
        &mut self,
        bytes: &[u8],
        mut each: impl FnMut(Msg<'_>) -> Result<bool, NlError>,
    ) -> Result<(), NlError> {
        self.send(bytes)?;
        while !self.receive(&mut each)? {}
        Ok(())
    }

    /// Sends one request, numbered `seq`, and collects the data messages
    /// answering it up to where its answer `ends`. A refusal (or a failed
    /// dump) is the kernel's errno and extended-ack text.
    pub fn request(&mut self, bytes: &[u8], seq: u32, ends: Ends) -> Result<Answer, NlError> {
        let mut answer = Answer {
            messages: Vec::new(),
            interrupted: false,
        };
        self.exchange(bytes, |m| {
            if m.seq != seq {
                return Ok(false);
            }
            if m.flags & NLM_F_DUMP_INTR != 0 {
                answer.interrupted = true;
            }
            match m.kind {
                NLMSG_ERROR => m.ack().map(|()| true),
                NLMSG_DONE => m.done().map(|()| true),
                NLMSG_NOOP => Ok(false),
                NLMSG_OVERRUN => Err(NlError::Malformed(
                    "the kernel's answer overran the socket buffer",
                )),
                _ => {
                    answer.messages.push(m.whole.to_vec());
                    Ok(ends == Ends::Reply)
                }
            }
        })?;
        Ok(answer)
    }

    /// A dump: the request `build` makes for a sequence number, sent until
    /// the kernel answers it without `NLM_F_DUMP_INTR` (at most
    /// [`DUMP_ATTEMPTS`] times); the data messages of that answer.
    pub fn dump(&mut self, mut build: impl FnMut(u32) -> Vec<u8>) -> Result<Vec<Vec<u8>>, NlError> {
        for _ in 0..DUMP_ATTEMPTS {
            let seq = self.next_seq();
            let answer = self.request(&build(seq), seq, Ends::Done)?;
            if !answer.interrupted {
                return Ok(answer.messages);
            }
        }
        Err(NlError::Other(format!(
            "the dump was interrupted by concurrent changes {DUMP_ATTEMPTS} times"
        )))
    }

    /// A typed request (`netlink-packet-route` and the like): `payload`
    /// with header `flags`, answered up to `ends` (dumps retried); the
    /// payloads of the answer. A dumped message that does not parse is
    /// skipped (and logged); a single reply that does not is an error.
    pub fn ask<T>(&mut self, payload: &T, flags: u16, ends: Ends) -> Result<Vec<T>, NlError>
    where
        T: NetlinkSerializable + NetlinkDeserializable + Clone + fmt::Debug,
    {
        self.ask_kept(payload, flags, ends, |_| true)
    }

    /// [`Socket::ask`], parsing only the messages of the answer that `keep`
    /// (shown each whole message, header included) says yes to: a dump of
    /// which a few entries matter costs their parse, not every entry's.
    pub fn ask_kept<T>(
        &mut self,
        payload: &T,
        flags: u16,
        ends: Ends,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<T>, NlError>
    where
        T: NetlinkSerializable + NetlinkDeserializable + Clone + fmt::Debug,
    {
        let encode = |seq: u32| {
            let mut msg = NetlinkMessage::new(
                NetlinkHeader::default(),
                NetlinkPayload::InnerMessage(payload.clone()),
            );
            msg.header.flags = flags;
            msg.header.sequence_number = seq;
            msg.finalize();
            let mut bytes = vec![0; msg.buffer_len()];
            msg.serialize(&mut bytes);
            bytes
        };
        let messages = match ends {
            Ends::Done => self.dump(encode)?,
            Ends::Ack | Ends::Reply => {
                let seq = self.next_seq();
                self.request(&encode(seq), seq, ends)?.messages
            }
        };
        let mut answer = Vec::with_capacity(messages.len());
        for bytes in messages.iter().filter(|m| keep(m)) {
            match NetlinkMessage::<T>::deserialize(bytes) {
                Ok(msg) => {
                    if let NetlinkPayload::InnerMessage(inner) = msg.payload {
                        answer.push(inner);
                    }
                }
                // The one reply asked for: without it there is no answer.
                Err(e) if ends == Ends::Reply => {
                    return Err(NlError::Other(format!(
                        "the kernel's answer does not parse: {e}"
                    )));
                }
                // One entry of a dump: the others still count.
                Err(e) => log::warn!("skipping a netlink message that does not parse: {e}"),
            }
        }
        Ok(answer)
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
    use netlink_packet_core::NLM_F_EXCL;
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};
    use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};

    use super::*;
    use crate::kernel::netns::in_new_netns;

    pub(super) fn route_socket() -> Socket {
        let mut sock = Socket::open(NETLINK_ROUTE, 0).unwrap();
        sock.connect_kernel(Duration::from_secs(5)).unwrap();
        sock.set_strict_check().unwrap();
        sock
    }

    fn link_names(answer: &[RouteNetlinkMessage]) -> Vec<String> {
        answer
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => {
                    link.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(name) => Some(name.clone()),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_kernel_answers_gets_dumps_and_refusals_with_their_reason() {
        in_new_netns(|| {
            let mut sock = route_socket();
            let dumped = sock
                .ask(
                    &RouteNetlinkMessage::GetLink(LinkMessage::default()),
                    NLM_F_REQUEST | NLM_F_DUMP,
                    Ends::Done,
                )
                .unwrap();
            assert_eq!(link_names(&dumped), ["lo"]);

            let mut lo = LinkMessage::default();
            lo.header.index = 1;
            let got = sock
                .ask(
                    &RouteNetlinkMessage::GetLink(lo),
                    NLM_F_REQUEST,
                    Ends::Reply,
                )
                .unwrap();
            assert_eq!(link_names(&got), ["lo"]);

            let mut gone = LinkMessage::default();
            gone.header.index = 4242;
            let err = sock
                .ask(
                    &RouteNetlinkMessage::GetLink(gone),
                    NLM_F_REQUEST,
                    Ends::Reply,
                )
                .unwrap_err();
            assert_eq!(err.errno(), Some(libc::ENODEV), "{err:?}");

            // A route via a gateway on no connected network: refused, and
            // the extended ack says why.
            let mut route = RouteMessage::default();
            route.header.address_family = netlink_packet_route::AddressFamily::Inet;
            route.header.table = 254;
            route.header.kind = netlink_packet_route::route::RouteType::Unicast;
            route
                .attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(
                    "192.0.2.1".parse().unwrap(),
                )));
            let err = sock
                .ask(
                    &RouteNetlinkMessage::NewRoute(route),
                    NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                    Ends::Ack,
                )
                .unwrap_err();
            match err {
                NlError::Kernel { errno, ext } => {
                    assert_eq!(errno, libc::ENETUNREACH);
                    assert!(ext.is_some_and(|t| !t.is_empty()), "no extended ack text");
                }
                other => panic!("{other:?}"),
            }
        });
    }

    #[test]
    fn a_late_answer_to_an_earlier_request_is_skipped() {
        in_new_netns(|| {
            let mut sock = route_socket();
            let encode = |seq: u32, index: u32| {
                let mut link = LinkMessage::default();
                link.header.index = index;
                let mut msg = NetlinkMessage::new(
                    NetlinkHeader::default(),
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetLink(link)),
                );
                msg.header.flags = NLM_F_REQUEST;
                msg.header.sequence_number = seq;
                msg.finalize();
                let mut bytes = vec![0; msg.buffer_len()];
                msg.serialize(&mut bytes);
                bytes
            };
            // An unanswered request (a refusal: no such device) is still
            // queued when the next one is asked.
            let first = sock.next_seq();
            sock.send(&encode(first, 4242)).unwrap();
            let seq = sock.next_seq();
            let answer = sock.request(&encode(seq, 1), seq, Ends::Reply).unwrap();
            assert_eq!(answer.messages.len(), 1);
            assert_eq!(Msg::of(&answer.messages[0]).unwrap().seq, seq);
        });
    }

    #[test]
    fn nfnetlink_uses_the_same_socket() {
        in_new_netns(|| {
            // NFT_MSG_GETGEN: the cheapest question nf_tables answers.
            let mut sock = Socket::open(NETLINK_NETFILTER, 0).unwrap();
            sock.connect_kernel(Duration::from_secs(5)).unwrap();
            let seq = sock.next_seq();
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&20u32.to_ne_bytes());
            bytes.extend_from_slice(&((10u16 << 8) | 16).to_ne_bytes());
            bytes.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
            bytes.extend_from_slice(&seq.to_ne_bytes());
            bytes.extend_from_slice(&0u32.to_ne_bytes());
            bytes.extend_from_slice(&[0, 0, 0, 0]);
            let answer = sock.request(&bytes, seq, Ends::Reply).unwrap();
            assert_eq!(answer.messages.len(), 1);
            let msg = Msg::of(&answer.messages[0]).unwrap();
            assert_eq!(msg.kind, (10 << 8) | 15, "NFT_MSG_NEWGEN");
        });
    }

    /// An `NLMSG_ERROR` with `flags` and `body` (code onwards).
    fn error_msg(flags: u16, body: &[u8]) -> Msg<'_> {
        Msg {
            kind: NLMSG_ERROR,
            flags,
            seq: 1,
            body,
            whole: body,
        }
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
        match error_msg(NLM_F_CAPPED | NLM_F_ACK_TLVS, &body).ack() {
            Err(NlError::Kernel { errno, ext }) => {
                assert_eq!(errno, libc::ENOENT);
                assert_eq!(ext.as_deref(), Some("no such set"));
            }
            other => panic!("{other:?}"),
        }
        let ack = 0i32.to_ne_bytes();
        assert!(error_msg(NLM_F_CAPPED | NLM_F_ACK_TLVS, &ack).ack().is_ok());
    }

    #[test]
    fn extack_text_is_read_from_capped_and_uncapped_errors() {
        // A capped NLMSG_ERROR payload: the request's 16-byte header, then
        // NLMSGERR_ATTR_MSG "bad gateway\0" (len 16).
        let mut capped = vec![0u8; 16];
        capped[0..4].copy_from_slice(&40u32.to_ne_bytes());
        capped.extend_from_slice(&16u16.to_ne_bytes());
        capped.extend_from_slice(&1u16.to_ne_bytes());
        capped.extend_from_slice(b"bad gateway\0");
        assert_eq!(
            extack_of_error(NLM_F_ACK_TLVS | NLM_F_CAPPED, &capped).as_deref(),
            Some("bad gateway")
        );
        // Uncapped: the whole 20-byte request precedes the attributes.
        let mut whole = vec![0u8; 20];
        whole[0..4].copy_from_slice(&20u32.to_ne_bytes());
        whole.extend_from_slice(&capped[16..]);
        assert_eq!(
            extack_of_error(NLM_F_ACK_TLVS, &whole).as_deref(),
            Some("bad gateway")
        );
        assert_eq!(extack_of_error(0, &whole), None);
        assert_eq!(extack_of_error(NLM_F_ACK_TLVS, &[1, 2]), None);
    }

    #[test]
    fn a_failed_dump_says_why_in_its_done_message() {
        let mut body = (-libc::EMSGSIZE).to_ne_bytes().to_vec();
        let text = b"dump too big\0";
        body.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        body.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        body.extend_from_slice(text);
        let done = Msg {
            kind: NLMSG_DONE,
            ..error_msg(NLM_F_ACK_TLVS, &body)
        };
        match done.done() {
            Err(NlError::Kernel { errno, ext }) => {
                assert_eq!(errno, libc::EMSGSIZE);
                assert_eq!(ext.as_deref(), Some("dump too big"));
            }
            other => panic!("{other:?}"),
        }
        let zero = 0i32.to_ne_bytes();
        assert!(error_msg(0, &zero).done().is_ok());
        assert!(error_msg(0, &[]).done().is_ok());
    }

    #[test]
    fn messages_split_at_their_aligned_length() {
        let mut bytes = Vec::new();
        for (kind, body) in [(16u16, &b"abc"[..]), (NLMSG_DONE, &0i32.to_ne_bytes()[..])] {
            let len = NLMSG_HDRLEN + body.len();
            bytes.extend_from_slice(&(len as u32).to_ne_bytes());
            bytes.extend_from_slice(&kind.to_ne_bytes());
            bytes.extend_from_slice(&0u16.to_ne_bytes());
            bytes.extend_from_slice(&7u32.to_ne_bytes());
            bytes.extend_from_slice(&0u32.to_ne_bytes());
            bytes.extend_from_slice(body);
            bytes.resize(align(bytes.len()), 0);
        }
        let (first, rest) = Msg::split(&bytes).unwrap().unwrap();
        assert_eq!((first.kind, first.seq, first.body), (16, 7, &b"abc"[..]));
        assert_eq!(first.whole.len(), NLMSG_HDRLEN + 3);
        let (second, rest) = Msg::split(rest).unwrap().unwrap();
        assert_eq!(second.kind, NLMSG_DONE);
        assert!(rest.is_empty());
        assert!(Msg::split(rest).unwrap().is_none());
        let mut bad = bytes.clone();
        bad[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(matches!(Msg::split(&bad), Err(NlError::BadLength)));
    }
}
