//! gwsteer: with `CNI_COMMAND` set a chained CNI plugin, otherwise the
//! operator CLI.
//!
//! The C `main` is gwsteer's own (`no_main`): a CNI plugin is exec'd for
//! every pod, and Rust's start-up, which a plugin does not need, read
//! `/proc/self/maps` to find the main thread's stack guard and mapped an
//! alternate signal stack for the message it prints on a stack overflow,
//! about 0.06 ms of each call on the benchmark VM. What of it matters is
//! done here as the standard library does it: file descriptors 0, 1 and 2
//! are open before anything else is (a closed stdout must not become a
//! state file, whose writes would then go to the runtime's pipe), and
//! `SIGPIPE` is ignored (a runtime that closed the pipe gives an error,
//! not a killed plugin). A stack overflow still ends the process at the
//! guard page, as a `SIGSEGV` without that message. `std::env::args` is
//! filled by the standard library's own start-up hook of glibc. (Under
//! `cargo test` the test harness keeps its own `main`.)
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    open_standard_fds();
    // SAFETY: setting a signal's disposition to SIG_IGN, before any other
    // thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let code = match std::env::var("CNI_COMMAND") {
        Ok(cmd) if !cmd.is_empty() => gwsteer::entry::cni(&cmd),
        _ => {
            let args: Vec<String> = std::env::args().skip(1).collect();
            gwsteer::cli::run(&args)
        }
    };
    std::process::exit(code);
}

/// Descriptors 0, 1 and 2 that are closed are opened on `/dev/null`
/// (lowest free descriptor first), as the standard library's start-up
/// does; a process that cannot do that aborts.
#[cfg(not(test))]
fn open_standard_fds() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of 3 pollfd for the call's duration;
    // opening /dev/null and aborting have no preconditions.
    unsafe {
        loop {
            if libc::poll(fds.as_mut_ptr(), 3, 0) != -1 {
                break;
            }
            match *libc::__errno_location() {
                libc::EINTR => continue,
                // poll cannot say: ask each descriptor.
                libc::EINVAL | libc::EAGAIN | libc::ENOMEM => {
                    for pfd in &mut fds {
                        let closed = libc::fcntl(pfd.fd, libc::F_GETFD) == -1
                            && *libc::__errno_location() == libc::EBADF;
                        pfd.revents = if closed { libc::POLLNVAL } else { 0 };
                    }
                    break;
                }
                _ => libc::abort(),
            }
        }
        for pfd in fds {
            if pfd.revents & libc::POLLNVAL != 0
                && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) == -1
            {
                libc::abort();
            }
        }
    }
}
