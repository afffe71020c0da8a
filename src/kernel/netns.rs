//! The one way into another network namespace: [`Netns::run`] runs a
//! closure on a short-lived thread that `setns`es into the namespace; the
//! caller's thread never changes namespace, and the namespace change ends
//! with the thread.
//!
//! What such a thread makes keeps its namespace after the thread is gone:
//! a netlink socket opened there talks to that namespace from any thread,
//! a child process spawned there runs in it. `/proc/sys/net` answers for
//! the namespace of the task that reads it. So a thread is needed only to
//! open, spawn or read; all later work goes over what it made.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};

use crate::error::{Error, Result, code};

/// An open network namespace file (`CNI_NETNS`).
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// The pod's network namespace. No path is a caller error
    /// (`INVALID_ENV`); a path that does not exist is a namespace that is
    /// gone (`UNKNOWN_CONTAINER`, which DEL takes for success).
    pub fn open_pod(path: Option<&Path>) -> Result<Netns> {
        let Some(path) = path else {
            return Err(Error::new(
                code::INVALID_ENV,
                "a pod-side object needs the pod's network namespace (CNI_NETNS), and none was given",
            ));
        };
        let file = File::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => missing(path, "does not exist"),
            _ => Error::io(
                format_args!("opening network namespace {}", path.display()),
                e,
            ),
        })?;
        Ok(Netns {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a thread inside this namespace and returns what it
    /// returns.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name("gwsteer-netns".into())
                .spawn_scoped(scope, || {
                    self.enter()?;
                    f()
                })
                .map_err(|e| {
                    Error::io("starting a thread to enter the pod's network namespace", e)
                })?;
            thread.join().map_err(|_| {
                Error::kernel(format!(
                    "the thread inside network namespace {} panicked",
                    self.path.display()
                ))
            })?
        })
    }

    /// `setns` of the calling thread.
    fn enter(&self) -> Result<()> {
        setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(|errno| match errno {
            // Typically the leftover mount point of a deleted namespace.
            Errno::EINVAL => missing(&self.path, "is not a network namespace"),
            other => Error::kernel(format!(
                "entering network namespace {}: {}",
                self.path.display(),
                io::Error::from(other)
            )),
        })
    }
}

/// Whether `path` still names a network namespace: `false` when nothing
/// is there or what is there is not one (the leftover mount point of a
/// deleted namespace), `true` when it is one or cannot be told (a path
/// that cannot be read is never taken for a namespace that is gone).
pub fn netns_alive(path: &Path) -> bool {
    match nix::sys::statfs::statfs(path) {
        Ok(fs) => fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC,
        Err(Errno::ENOENT | Errno::ENOTDIR) => false,
        Err(_) => true,
    }
}

/// Runs `f` on a thread in a new, empty network namespace (tests, as
/// root). Children spawned from it run there too; the namespace goes when
/// the thread ends.
#[cfg(test)]
pub(crate) fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let thread = std::thread::spawn(move || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET): these tests run as root");
        f()
    });
    match thread.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn missing(path: &Path, why: &str) -> Error {
    Error::new(
        code::UNKNOWN_CONTAINER,
        format!("network namespace {} {why}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netns_inode() -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
    }

    #[test]
    fn runs_inside_the_namespace_and_leaves_the_caller_where_it_was() {
        // A namespace of our own: a thread that unshares, kept alive while
        // its /proc/…/ns/net is the target.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET): these tests run as root");
            let tid = nix::unistd::gettid();
            tx.send((
                PathBuf::from(format!("/proc/self/task/{tid}/ns/net")),
                netns_inode(),
            ))
            .unwrap();
            done_rx.recv().ok();
        });
        let (path, inode) = rx.recv().unwrap();
        let here = netns_inode();
        assert_ne!(here, inode);
        let ns = Netns::open_pod(Some(&path)).unwrap();
        assert_eq!(ns.run(|| Ok(netns_inode())).unwrap(), inode);
        assert_eq!(netns_inode(), here);
        // What the closure says goes back to the caller, error codes intact.
        let err = ns
            .run(|| -> Result<()> { Err(Error::config("no")) })
            .unwrap_err();
        assert_eq!(err.code, code::INVALID_CONFIG);
        done_tx.send(()).unwrap();
        holder.join().unwrap();
    }

    #[test]
    fn missing_and_bogus_namespaces_are_told_apart_from_failures() {
        let err = Netns::open_pod(None).err().unwrap();
        assert_eq!(err.code, code::INVALID_ENV);
        let gone = Path::new("/run/netns/gwsteer-no-such-netns");
        let err = Netns::open_pod(Some(gone)).err().unwrap();
        assert_eq!(err.code, code::UNKNOWN_CONTAINER);
        assert_eq!(
            err.msg,
            "network namespace /run/netns/gwsteer-no-such-netns does not exist"
        );
        // A file that is not a namespace: the mount point a deleted
        // namespace leaves behind.
        let not_ns =
            std::env::temp_dir().join(format!("gwsteer-netns-test-{}", std::process::id()));
        std::fs::write(&not_ns, b"").unwrap();
        let ns = Netns::open_pod(Some(&not_ns)).unwrap();
        let err = ns.run(|| Ok(())).unwrap_err();
        let _ = std::fs::remove_file(&not_ns);
        assert_eq!(err.code, code::UNKNOWN_CONTAINER);
        assert!(err.msg.ends_with("is not a network namespace"), "{err}");
    }
}
