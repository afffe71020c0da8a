//! Talking to the kernel: what a request expects back, why it failed
//! (errno, extended ack, hints), and opening the socket in a namespace.

use super::*;

/// What a request expects back.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Req {
    /// A change acknowledged by the kernel; the extra `NLM_F_*` flags.
    Change(u16),
    /// One object by key.
    Get,
    /// A dump.
    Dump,
}

/// Why a request failed.
#[derive(Debug)]
pub(super) enum NlError {
    /// The kernel refused: errno and the extended ack's text, if any.
    Kernel { errno: i32, ext: Option<String> },
    /// The socket or the answer was broken.
    Transport(String),
    /// Something failed before a request could be made (opening the pod's
    /// namespace, an unknown device, an impossible spec).
    Setup(Error),
}

impl NlError {
    pub(super) fn errno(&self) -> Option<i32> {
        match self {
            NlError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// An [`Error`] whose message says what was being done. Setup errors
    /// keep their code (a missing netns stays `UNKNOWN_CONTAINER`).
    pub(super) fn into_error(self, doing: impl fmt::Display) -> Error {
        match self {
            NlError::Setup(err) => err.context(doing),
            other => Error::kernel(format!("{doing}: {other}")),
        }
    }
}

impl fmt::Display for NlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NlError::Kernel { errno, ext } => {
                write!(f, "{}", io::Error::from_raw_os_error(*errno))?;
                if let Some(ext) = ext {
                    write!(f, ": {ext}")?;
                }
                Ok(())
            }
            NlError::Transport(msg) => f.write_str(msg),
            NlError::Setup(err) => write!(f, "{err}"),
        }
    }
}

impl From<nl::NlError> for NlError {
    fn from(e: nl::NlError) -> NlError {
        match e {
            nl::NlError::Kernel { errno, ext } => NlError::Kernel { errno, ext },
            nl::NlError::Socket(step, e) => NlError::Transport(match step {
                nl::Step::Send => format!("sending to the kernel: {e}"),
                nl::Step::DeviceLookup => format!("looking up a network device: {e}"),
                _ => format!("receiving from the kernel: {e}"),
            }),
            nl::NlError::ShortSend { sent, len } => {
                NlError::Transport(format!("the kernel took {sent} of {len} bytes"))
            }
            nl::NlError::Timeout(t) => {
                NlError::Transport(format!("the kernel did not answer within {}s", t.as_secs()))
            }
            nl::NlError::TooLarge(n) => NlError::Transport(format!(
                "an answer of {n} bytes did not fit the receive buffer"
            )),
            nl::NlError::BadLength => NlError::Transport("a malformed netlink message".into()),
            nl::NlError::TruncatedError => NlError::Transport("a truncated netlink error".into()),
            nl::NlError::Malformed(what) => NlError::Transport(what.into()),
            nl::NlError::Other(what) => NlError::Transport(what),
        }
    }
}

/// An rtnetlink socket in the calling thread's namespace: strict checks
/// (dump filters honoured), extended acks, the request timeout.
pub(super) fn open_socket() -> io::Result<nl::Socket> {
    let opened = nl::Socket::open(nl::NETLINK_ROUTE, 0).and_then(|mut sock| {
        sock.connect_kernel(REQUEST_TIMEOUT)?;
        sock.set_strict_check()?;
        Ok(sock)
    });
    opened.map_err(|e| match e {
        nl::NlError::Socket(_, e) => e,
        other => io::Error::other(NlError::from(other).to_string()),
    })
}

pub(super) fn open_here() -> Result<Conn> {
    let sock = open_socket().map_err(|e| Error::io("opening a netlink socket", e))?;
    Ok(Conn::new(sock))
}

pub(super) fn open_pod(netns: Option<&Path>) -> Result<Conn> {
    let ns = Netns::open_pod(netns)?;
    let sock = ns.run(|| {
        open_socket().map_err(|e| {
            Error::io(
                format_args!(
                    "opening a netlink socket in network namespace {}",
                    ns.path().display()
                ),
                e,
            )
        })
    })?;
    Ok(Conn::new(sock))
}

/// Sends one request and collects the answer; dumps interrupted by
/// concurrent changes are retried.
pub(super) fn exchange(
    sock: &mut nl::Socket,
    payload: RouteNetlinkMessage,
    req: Req,
) -> Result<Vec<RouteNetlinkMessage>, NlError> {
    exchange_kept(sock, payload, req, |_| true)
}

/// [`exchange`], parsing only the answer's messages `keep` says yes to
/// ([`nl::Socket::ask_kept`]).
pub(super) fn exchange_kept(
    sock: &mut nl::Socket,
    payload: RouteNetlinkMessage,
    req: Req,
    keep: impl Fn(&[u8]) -> bool,
) -> Result<Vec<RouteNetlinkMessage>, NlError> {
    let (flags, ends) = match req {
        Req::Change(flags) => (NLM_F_REQUEST | NLM_F_ACK | flags, Ends::Ack),
        Req::Get => (NLM_F_REQUEST, Ends::Reply),
        Req::Dump => (NLM_F_REQUEST | NLM_F_DUMP, Ends::Done),
    };
    Ok(sock.ask_kept(&payload, flags, ends, keep)?)
}

#[derive(Clone, Copy)]
pub(super) enum Op {
    Add,
    Remove,
    Observe,
}

pub(super) fn failure(op: Op, obj: &Object, err: NlError) -> Error {
    let doing = match op {
        Op::Add => "adding",
        Op::Remove => "removing",
        Op::Observe => "reading back",
    };
    let hint = err.errno().and_then(|errno| hint(op, obj, errno));
    let err = err.into_error(format_args!("{doing} {obj}"));
    match hint {
        Some(hint) => err.with_details(hint),
        None => err,
    }
}

pub(super) fn hint(op: Op, obj: &Object, errno: i32) -> Option<&'static str> {
    let (family, gateway_route) = match obj {
        Object::Rule { spec, .. } => (spec.family, false),
        Object::Route { spec, .. } => (spec.family(), !spec.nexthops.is_empty()),
        _ => return None,
    };
    let errno = Errno::from_raw(errno);
    match errno {
        Errno::ENETUNREACH | Errno::EHOSTUNREACH if matches!(op, Op::Add) && gateway_route => {
            Some(match obj.side() {
                Side::Node => "is the gateway reachable from the node, on a connected network?",
                Side::Pod => "is the gateway reachable from the pod, on a connected network?",
            })
        }
        Errno::EAFNOSUPPORT | Errno::EACCES if family == Family::V6 => Some("is IPv6 enabled?"),
        Errno::EPERM | Errno::EACCES => Some("gwsteer needs CAP_NET_ADMIN"),
        _ => None,
    }
}

pub(super) fn side_suffix(side: Side) -> &'static str {
    match side {
        Side::Node => "",
        Side::Pod => " in the pod's network namespace",
    }
}
