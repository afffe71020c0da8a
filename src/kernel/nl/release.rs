//! Closing a socket without waiting for its release.
//!
//! The last reference to a socket goes into flight, by `SCM_RIGHTS`, on a
//! unix datagram pair that also carries its own receiving end; then all
//! three descriptors are closed. Nothing in this process can reach the pair
//! any more: it is a garbage cycle, and the kernel's unix garbage collector
//! drops the references in a kernel worker, where the socket's release then
//! runs, not in this process's `close` or exit. Measured on this machine's
//! 6.18 and on Debian 12's 6.1 (the VRF guest), each test also waiting for
//! the kernel to release the sockets (`tests/it/support/nfclose.rs`). A
//! kernel whose collector ran in the closing process would make the close
//! wait as before; on any failure the socket is closed plainly: slower,
//! never wrong.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Closes `fd`, leaving its release to the kernel's unix garbage collector.
pub fn hand_to_kernel(fd: OwnedFd) -> io::Result<()> {
    let mut pair = [0; 2];
    // SAFETY: `pair` has room for the two descriptors socketpair writes.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made, and nothing else owns them.
    let (sender, receiver) =
        unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    let fds = [receiver.as_raw_fd(), fd.as_raw_fd()];
    let data_len = std::mem::size_of_val(&fds) as u32;
    // SAFETY: CMSG_SPACE is a size computation.
    let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
    // u64s: a control buffer is aligned for `cmsghdr`.
    let mut control = [0u64; 8];
    assert!(
        space <= std::mem::size_of_val(&control),
        "SCM_RIGHTS of two descriptors fits 64 bytes"
    );
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: byte.len(),
    };
    // SAFETY: an all-zero msghdr is valid; what is set below points into
    // `iov` and `control`, which outlive the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer holds CMSG_SPACE(data_len) zeroed bytes,
    // so CMSG_FIRSTHDR is non-null and its data has room for `fds`.
    let sent = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as _;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr().cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            data_len as usize,
        );
        libc::sendmsg(sender.as_raw_fd(), &msg, libc::MSG_DONTWAIT)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    // The order matters. The socket's own descriptor first: from here on
    // only the message holds it. Then the receiving end, which stays alive
    // in flight in its own queue. Closing the sending end last sets the
    // collector off, when nothing outside the cycle is left.
    drop(fd);
    drop(receiver);
    drop(sender);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, Instant};

    /// The write end of a pipe, handed over: this process holds no
    /// reference any more, and the kernel drops its own soon, so the reader
    /// sees end of file (it would block for good if the reference leaked:
    /// with the sending end kept open, nothing sets the collector off).
    #[test]
    fn a_handed_over_descriptor_is_released_by_the_kernel() {
        let (reader, writer) = std::io::pipe().unwrap();
        hand_to_kernel(OwnedFd::from(writer)).expect("hand-over works here");
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = reader;
            let mut rest = Vec::new();
            let _ = done.send(reader.read_to_end(&mut rest).map(|_| rest.len()));
        });
        let started = Instant::now();
        let read = finished
            .recv_timeout(Duration::from_secs(5))
            .expect("the pipe's write end is still open 5 s after the hand-over");
        assert_eq!(read.unwrap(), 0, "end of file, nothing written");
        eprintln!("end of file after {:?}", started.elapsed());
    }
}
