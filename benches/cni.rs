//! The CNI benchmark: whole-process cost of gwsteer's ADD and DEL next to the
//! reference `sbr` plugin, on the real kernel, in namespaces of its own.
//!
//! Run as root: `cargo bench --bench cni` (or `benches/run.sh`, which builds
//! release binaries and writes `benches/RESULTS.md`). Options after `--`:
//! `--out FILE` (also write the report there), `--iterations N` (default
//! 300), `--concurrent N` (default 100), `--levels 0,100,1000` (attachments
//! already on the node; the default). Without `--bench` (as `cargo test
//! --all-targets` runs it) it does nothing.
//!
//! What is measured, per call: spawn → exit of the plugin binary itself
//! (`std::process::Command`, exec included, no `ip netns exec` in between:
//! this process `setns`es into the node namespace and its children inherit
//! it), the spec's `CNI_*` environment and the config on stdin, wall time
//! and the child's CPU time from `wait4`. Modes, node levels (0, 100, 1000
//! attachments already on the node) and the exec floor are interleaved in
//! every iteration, so drift on a shared machine hits all of them alike.
//!
//! Peak RSS comes from `wait4`'s `ru_maxrss`, but through a tiny static
//! launcher: Linux carries the parent's RSS high-water mark into the child at
//! `execve`, so a child of this (larger) process would report this process's
//! RSS, not its own.
//!
//! Everything lives in namespaces named `gwbench_<pid>-…` and a state directory
//! `/dev/shm/gwsteer-bench-<pid>` (tmpfs, like `/run` on a node); both are
//! removed on exit, on error, on panic and on SIGINT/SIGTERM/SIGHUP, and
//! leftovers of a run that was killed harder are removed at the next start.
//! The root network namespace is never touched.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::libc;
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{SigSet, Signal};
use serde_json::{Value, json};

type Res<T> = Result<T, String>;

const GWSTEER_BIN: &str = env!("CARGO_BIN_EXE_gwsteer");
const SBR_BIN: &str = "/usr/lib/cni/sbr";
const REFERENCE_DIR: &str = "/usr/lib/cni";
const LEVELS: [usize; 3] = [0, 100, 1000];
/// `ru_maxrss` target, KiB.
const RSS_TARGET_KB: i64 = 5 * 1024;
/// Pod index of the measured attachment (pre-populated ones are 0..level,
/// the concurrent ones `CONCURRENT_BASE..`).
const MEASURED: usize = 3000;
/// The whole-network modes' measured pod: in the first pre-populated
/// subnet (10.244.1.0/24, fd00:244:0:1::/64), at an address no
/// pre-populated pod has ([`pod_v4`] gives them .2 to .251).
const WHOLE_MEASURED: (&str, &str) = ("10.244.1.253", "fd00:244:0:1::fd");
/// The `source` policy of the benchmark: table, priority (its rules; the
/// exclusions one earlier) and exclusions.
const SOURCE_TABLE: u32 = 100;
const SOURCE_PRIORITY: u32 = 1000;
const SOURCE_EXCLUDE: [&str; 3] = ["10.244.0.0/16", "10.96.0.0/12", "fd00:244::/48"];
/// Address of the kernel-share helper's rules: no attachment has it.
const RULES_POD: (&str, &str) = ("10.244.200.9/32", "fd00:244:0:c8::9/128");
const CONCURRENT_BASE: usize = 2000;
/// ADD/DEL pairs per mode and level run through the RSS launcher.
const RSS_RUNS: usize = 5;
/// ADD/DEL pairs per mode under `perf stat`.
const PERF_RUNS: usize = 20;

// ---------------------------------------------------------------- cleanup

/// Namespaces and directories this run made, newest last.
static CREATED_NS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static CREATED_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// The network namespace the process started in.
static ORIGINAL_NS: OnceLock<File> = OnceLock::new();
/// Set by the signal thread: whatever fails after this is its doing.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `gwbench_<pid>`: the `_` keeps it apart from the test labs' `gw<tag>-…`.
fn prefix() -> String {
    format!("gwbench_{}", std::process::id())
}

/// Removes everything this run made. Safe to call more than once.
/// `GWSTEER_BENCH_KEEP=1` keeps it all for debugging (then remove it by hand).
fn cleanup_all() {
    if std::env::var_os("GWSTEER_BENCH_KEEP").is_some_and(|v| v == "1") {
        eprintln!(
            "GWSTEER_BENCH_KEEP=1: keeping netns {:?} and {:?}",
            lock(&CREATED_NS),
            lock(&CREATED_DIRS)
        );
        return;
    }
    if let Some(orig) = ORIGINAL_NS.get() {
        let _ = setns(orig, CloneFlags::CLONE_NEWNET);
    }
    let names = std::mem::take(&mut *lock(&CREATED_NS));
    for ns in names.iter().rev() {
        delete_netns(ns);
    }
    let dirs = std::mem::take(&mut *lock(&CREATED_DIRS));
    for dir in dirs.iter().rev() {
        let _ = fs::remove_dir_all(dir);
    }
}

struct CleanupGuard;

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        cleanup_all();
    }
}

fn delete_netns(ns: &str) {
    let me = std::process::id().to_string();
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if pid != me
                && let Ok(pid) = pid.parse::<i32>()
                && pid > 1
            {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// Namespaces and state dirs of earlier runs whose process is gone.
fn remove_stale() {
    let alive = |pid: &str| Path::new(&format!("/proc/{pid}")).exists();
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix("gwbench_")
                && let Some((pid, _)) = rest.split_once('-')
                && pid.chars().all(|c| c.is_ascii_digit())
                && !alive(pid)
            {
                eprintln!("removing stale netns {name}");
                delete_netns(&name);
            }
        }
    }
    if let Ok(entries) = fs::read_dir("/dev/shm") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("gwsteer-bench-")
                && !alive(pid)
            {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// SIGINT/SIGTERM/SIGHUP: clean up, then exit. Blocked here, waited for on
/// a thread (children get an empty mask from `Command`).
fn install_signal_cleanup() -> Res<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;
    std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            if let Ok(sig) = set.wait() {
                INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
                eprintln!("\n{sig:?}: removing the benchmark's namespaces");
                cleanup_all();
                std::process::exit(128 + sig as i32);
            }
        })
        .map_err(|e| format!("starting the signal thread: {e}"))?;
    Ok(())
}

// ---------------------------------------------------------------- commands

/// Runs a helper command (argument vector), failing with its stderr.
fn run(prog: &str, args: &[&str]) -> Res<String> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| format!("{prog} {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{prog} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip [-n ns] [-6] -batch -` with `lines` on stdin.
fn ip_batch(ns: &str, v6: bool, lines: &[String]) -> Res<()> {
    let mut args = vec!["-n", ns];
    if v6 {
        args.push("-6");
    }
    args.extend(["-batch", "-"]);
    let mut child = Command::new("ip")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip: {e}"))?;
    let text = lines.join("\n") + "\n";
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("ip -batch: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("ip -batch: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip -n {ns} -batch failed: {}\n{text}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn netns_add(name: &str) -> Res<File> {
    lock(&CREATED_NS).push(name.to_string());
    run("ip", &["netns", "add", name])?;
    run(
        "ip",
        &[
            "netns",
            "exec",
            name,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ],
    )?;
    ip_batch(name, false, &["link set dev lo up".into()])?;
    File::open(format!("/run/netns/{name}")).map_err(|e| format!("open netns {name}: {e}"))
}

fn enter(ns: &File) -> Res<()> {
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))
}

// ---------------------------------------------------------------- measuring

/// One finished child.
struct Outcome {
    wall: Duration,
    cpu: Duration,
    maxrss_kb: i64,
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.code == 0
    }

    fn describe(&self) -> String {
        format!(
            "exit {}; stdout: {}; stderr: {}",
            self.code,
            String::from_utf8_lossy(&self.stdout).trim(),
            self.stderr.trim()
        )
    }

    fn error_msg(&self) -> String {
        serde_json::from_slice::<Value>(&self.stdout)
            .ok()
            .and_then(|v| v.get("msg").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| self.describe())
    }

    fn error_code(&self) -> Option<u64> {
        serde_json::from_slice::<Value>(&self.stdout)
            .ok()?
            .get("code")?
            .as_u64()
    }
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// Reaps `pid`: (exit code or 128+signal, rusage).
fn wait4(pid: u32) -> Res<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals for the duration of the call.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut ru) };
        if r == pid as libc::pid_t {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4({pid}): {err}"));
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    };
    Ok((code, ru))
}

/// A prepared invocation: program, arguments, environment, stdin.
#[derive(Clone)]
struct Invocation {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Vec<u8>,
}

impl Invocation {
    fn command(&self, stderr: Stdio) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        cmd
    }

    /// The same call under a wrapper (`launcher out -- prog`, `strace … prog`).
    fn wrapped(&self, wrapper: &Path, pre: &[String]) -> Invocation {
        let mut args = pre.to_vec();
        args.push(self.program.display().to_string());
        args.extend(self.args.iter().cloned());
        Invocation {
            program: wrapper.to_path_buf(),
            args,
            env: self.env.clone(),
            stdin: self.stdin.clone(),
        }
    }
}

/// Scratch files for children's stderr.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn stderr_file(&self, n: usize) -> Res<(File, PathBuf)> {
        let path = self.dir.join(format!("stderr.{n}"));
        let f = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((f, path))
    }
}

/// Runs one invocation and measures it: spawn → reaped.
fn measure(inv: &Invocation, scratch: &Scratch) -> Res<Outcome> {
    let (errf, errpath) = scratch.stderr_file(0)?;
    let mut cmd = inv.command(Stdio::from(errf));
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", inv.program.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading stdin is not our error.
        let _ = stdin.write_all(&inv.stdin);
    }
    // Results are far below a pipe's capacity: reaping first cannot block.
    let (code, ru) = wait4(child.id())?;
    let wall = start.elapsed();
    let mut stdout = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_end(&mut stdout);
    }
    let stderr = fs::read_to_string(&errpath).unwrap_or_default();
    Ok(Outcome {
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        maxrss_kb: ru.ru_maxrss,
        code,
        stdout,
        stderr,
    })
}

/// Spawns all invocations back to back, then reaps them all: wall time from
/// the first spawn to the last exit, and every outcome.
fn measure_concurrent(invs: &[Invocation], scratch: &Scratch) -> Res<(Duration, Vec<Outcome>)> {
    let mut running = Vec::with_capacity(invs.len());
    let mut files = Vec::with_capacity(invs.len());
    for n in 0..invs.len() {
        files.push(scratch.stderr_file(n + 1)?);
    }
    let start = Instant::now();
    for (inv, (errf, _)) in invs.iter().zip(files.iter()) {
        let errf = errf.try_clone().map_err(|e| format!("dup: {e}"))?;
        let mut child = inv
            .command(Stdio::from(errf))
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", inv.program.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&inv.stdin);
        }
        running.push(child);
    }
    let mut reaped = Vec::with_capacity(running.len());
    for child in &running {
        reaped.push(wait4(child.id())?);
    }
    let wall = start.elapsed();
    let mut outcomes = Vec::with_capacity(running.len());
    for ((mut child, (code, ru)), (_, errpath)) in running.into_iter().zip(reaped).zip(files) {
        let mut stdout = Vec::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_end(&mut stdout);
        }
        outcomes.push(Outcome {
            wall,
            cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
            maxrss_kb: ru.ru_maxrss,
            code,
            stdout,
            stderr: fs::read_to_string(&errpath).unwrap_or_default(),
        });
    }
    Ok((wall, outcomes))
}

// ---------------------------------------------------------------- helpers: C programs

const FLOOR_C: &str = "int main(void) { return 0; }\n";

/// `launcher OUT PROG ARGS…`: fork, exec PROG (environment and stdio
/// inherited), wait4, write the child's ru_maxrss (KiB) to OUT, exit with
/// its status. Small and static, so the high-water mark the child inherits
/// at execve is this launcher's, not the benchmark's.
const LAUNCHER_C: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
    if (argc < 3) return 125;
    pid_t pid = fork();
    if (pid < 0) return 124;
    if (pid == 0) { execv(argv[2], argv + 2); _exit(127); }
    int status; struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) return 126;
    FILE *f = fopen(argv[1], "w");
    if (f) { fprintf(f, "%ld\n", ru.ru_maxrss); fclose(f); }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
"#;

/// `rules add|del (FAMILY SRC DST|- TABLE PRIO)…`: the policy rules a
/// `source` ADD makes, one acknowledged RTM_NEWRULE (create, excl) or
/// RTM_DELRULE each, protocol 211, as gwsteer sends them, and nothing else.
/// Measured next to gwsteer, it is the kernel's share of a `source` call:
/// the floor plus the rule list's cost at that level.
const RULES_C: &str = r#"#include <arpa/inet.h>
#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
static int attr(char *buf, int off, int type, const void *data, int len) {
    struct rtattr *a = (struct rtattr *)(buf + off);
    a->rta_type = type;
    a->rta_len = RTA_LENGTH(len);
    memcpy(RTA_DATA(a), data, len);
    return off + RTA_ALIGN(a->rta_len);
}
static int prefix(const char *s, int fam, unsigned char *addr) {
    char tmp[64];
    strncpy(tmp, s, sizeof tmp - 1);
    tmp[sizeof tmp - 1] = 0;
    char *slash = strchr(tmp, '/');
    if (!slash) return -1;
    *slash = 0;
    if (inet_pton(fam, tmp, addr) != 1) return -1;
    return atoi(slash + 1);
}
int main(int argc, char **argv) {
    if (argc < 7 || (argc - 2) % 5) return 2;
    int add = strcmp(argv[1], "add") == 0;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) return 3;
    for (int i = 2, seq = 1; i < argc; i += 5, seq++) {
        char buf[512] = {0};
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        struct fib_rule_hdr *r = NLMSG_DATA(h);
        int fam = atoi(argv[i]) == 6 ? AF_INET6 : AF_INET, alen = fam == AF_INET6 ? 16 : 4;
        unsigned char a[16];
        unsigned table = strtoul(argv[i + 3], 0, 10), prio = strtoul(argv[i + 4], 0, 10);
        unsigned char proto = 211;
        h->nlmsg_type = add ? RTM_NEWRULE : RTM_DELRULE;
        h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
        h->nlmsg_seq = seq;
        r->family = fam;
        r->action = FR_ACT_TO_TBL;
        r->table = table < 256 ? table : RT_TABLE_UNSPEC;
        int off = NLMSG_LENGTH(sizeof *r);
        int len = prefix(argv[i + 1], fam, a);
        if (len < 0) return 2;
        r->src_len = len;
        off = attr(buf, off, FRA_SRC, a, alen);
        if (strcmp(argv[i + 2], "-")) {
            if ((len = prefix(argv[i + 2], fam, a)) < 0) return 2;
            r->dst_len = len;
            off = attr(buf, off, FRA_DST, a, alen);
        }
        off = attr(buf, off, FRA_TABLE, &table, 4);
        off = attr(buf, off, FRA_PRIORITY, &prio, 4);
        off = attr(buf, off, FRA_PROTOCOL, &proto, 1);
        h->nlmsg_len = off;
        if (send(fd, buf, off, 0) != off) return 3;
        char ack[1024];
        int n = recv(fd, ack, sizeof ack, 0);
        struct nlmsghdr *ah = (struct nlmsghdr *)ack;
        if (n < (int)NLMSG_LENGTH(sizeof(struct nlmsgerr)) || ah->nlmsg_type != NLMSG_ERROR) return 3;
        if (((struct nlmsgerr *)NLMSG_DATA(ah))->error) return 1;
    }
    return 0;
}
"#;

/// The arguments of the rules helper: add or del, then the rules the
/// `source` policy gives a pod with `RULES_POD`'s addresses, in gwsteer's
/// order: ADD makes them exclusions first, then the steering rule, per
/// family; DEL removes them in reverse (the order matters to the kernel's
/// cache misses, see BREAKDOWN.md).
fn rules_helper_args(verb: Verb) -> Vec<String> {
    let mut rules: Vec<[String; 5]> = Vec::new();
    for (fam, pod) in [("4", RULES_POD.0), ("6", RULES_POD.1)] {
        let v6 = fam == "6";
        for cidr in SOURCE_EXCLUDE.iter().filter(|c| c.contains(':') == v6) {
            rules.push([
                fam.to_string(),
                pod.to_string(),
                cidr.to_string(),
                "254".to_string(),
                (SOURCE_PRIORITY - 1).to_string(),
            ]);
        }
        rules.push([
            fam.to_string(),
            pod.to_string(),
            "-".to_string(),
            SOURCE_TABLE.to_string(),
            SOURCE_PRIORITY.to_string(),
        ]);
    }
    let verb = match verb {
        Verb::Add => "add",
        Verb::Del => {
            rules.reverse();
            "del"
        }
    };
    std::iter::once(verb.to_string())
        .chain(rules.into_iter().flatten())
        .collect()
}

struct Helpers {
    /// Static do-nothing binary (None if no C compiler: /bin/true is used).
    floor_static: Option<PathBuf>,
    launcher: Option<PathBuf>,
    /// The kernel-share helper (`RULES_C`).
    rules: Option<PathBuf>,
    compile_note: String,
}

fn build_helpers(dir: &Path) -> Helpers {
    let compile = |name: &str, src: &str| -> Res<PathBuf> {
        let c = dir.join(format!("{name}.c"));
        let bin = dir.join(name);
        fs::write(&c, src).map_err(|e| format!("{}: {e}", c.display()))?;
        run(
            "cc",
            &[
                "-O2",
                "-static",
                "-o",
                &bin.display().to_string(),
                &c.display().to_string(),
            ],
        )?;
        Ok(bin)
    };
    let mut note = String::new();
    let floor_static = compile("floor", FLOOR_C)
        .map_err(|e| note.push_str(&format!("static floor not built ({e}); ")))
        .ok();
    let launcher = compile("launcher", LAUNCHER_C)
        .map_err(|e| note.push_str(&format!("RSS launcher not built ({e}); ")))
        .ok();
    let rules = compile("rules", RULES_C)
        .map_err(|e| note.push_str(&format!("kernel-share helper not built ({e}); ")))
        .ok();
    Helpers {
        floor_static,
        launcher,
        rules,
        compile_note: note,
    }
}

// ---------------------------------------------------------------- the lab

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Mode {
    Source,
    /// `source` with another gwsteer binary (`GWSTEER_BENCH_ALT_BIN`), same
    /// network and attachments: an A/B of a build change in the same run.
    SourceAlt,
    Connmark,
    /// `mark` with `egressTo`: per pod one element in the policy's set.
    Mark,
    GwClient,
    /// `source` with `side: "pod"`: the steering inside the pod's
    /// namespace, on the same pod and interface as sbr (sbr's own job).
    PodSide,
    /// `source` with `scope: "subnet"`: one rule set per pod subnet, no
    /// per-pod kernel object.
    Subnet,
    /// `connmark` with `scope: "subnet"`: one range per pod subnet in the
    /// policy's set, no per-pod element.
    ConnmarkSubnet,
    /// `vrf` with `leak: "pod"`: a /32 and a /128 per pod in the VRF's
    /// table. Only where the kernel makes VRFs (`--vrf`, in the guest).
    VrfPod,
    /// `vrf` with `leak: "cidr"`: the pod CIDRs in the VRF's table, a node
    /// group held by every pod. Only with `--vrf`.
    VrfCidr,
    Sbr,
}

/// Every mode, in report order; a run measures those `--vrf` or its
/// absence selects ([`Options::modes`]).
const MODES: [Mode; 11] = [
    Mode::Source,
    Mode::Subnet,
    Mode::ConnmarkSubnet,
    Mode::SourceAlt,
    Mode::Connmark,
    Mode::Mark,
    Mode::GwClient,
    Mode::PodSide,
    Mode::VrfPod,
    Mode::VrfCidr,
    Mode::Sbr,
];

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Source => "gwsteer source",
            Mode::SourceAlt => "gwsteer source, alt build",
            Mode::Connmark => "gwsteer connmark",
            Mode::Mark => "gwsteer mark",
            Mode::GwClient => "gwsteer gw-net client",
            Mode::PodSide => "gwsteer source, pod side",
            Mode::Subnet => "gwsteer source, whole network",
            Mode::ConnmarkSubnet => "gwsteer connmark, whole network",
            Mode::VrfPod => "gwsteer VRF leak, per pod",
            Mode::VrfCidr => "gwsteer VRF leak, per CIDR",
            Mode::Sbr => "sbr",
        }
    }

    fn network(self) -> &'static str {
        match self {
            Mode::Source | Mode::SourceAlt => "bench-src",
            Mode::Connmark => "bench-cm",
            Mode::Mark => "bench-mk",
            Mode::GwClient => "bench-gw",
            Mode::PodSide => "bench-pod",
            Mode::Subnet => "bench-net",
            Mode::ConnmarkSubnet => "bench-cmn",
            Mode::VrfPod => "bench-vrfp",
            Mode::VrfCidr => "bench-vrfc",
            Mode::Sbr => "bench-sbr",
        }
    }

    /// A whole-network policy (`scope: "subnet"`): its measured pod is one
    /// more pod of the pre-populated subnet.
    fn whole_network(self) -> bool {
        matches!(self, Mode::Subnet | Mode::ConnmarkSubnet)
    }

    /// Measured on a node namespace of its own (`…-w`), where the per-pod
    /// `source` row's 5000 rules do not lengthen the rule list its rule
    /// re-assertions walk: the whole-network rows, and `mark`/`connmark`,
    /// whose node holds one `fwmark` rule per policy.
    fn own_node(self) -> bool {
        matches!(
            self,
            Mode::Subnet
                | Mode::ConnmarkSubnet
                | Mode::Connmark
                | Mode::Mark
                | Mode::VrfPod
                | Mode::VrfCidr
        )
    }

    /// Needs a kernel with VRF: measured only with `--vrf`.
    fn is_vrf(self) -> bool {
        matches!(self, Mode::VrfPod | Mode::VrfCidr)
    }

    fn is_gwsteer(self) -> bool {
        self != Mode::Sbr
    }

    /// Modes the targets are about (the alt build is only a comparison).
    fn is_target(self) -> bool {
        self.is_gwsteer() && self != Mode::SourceAlt
    }

    /// For file names: unique per mode.
    fn tag(self) -> &'static str {
        match self {
            Mode::Source => "src",
            Mode::SourceAlt => "src-alt",
            Mode::Connmark => "cm",
            Mode::Mark => "mk",
            Mode::GwClient => "gw",
            Mode::PodSide => "pod",
            Mode::Subnet => "net",
            Mode::ConnmarkSubnet => "cmn",
            Mode::VrfPod => "vrfp",
            Mode::VrfCidr => "vrfc",
            Mode::Sbr => "sbr",
        }
    }

    /// Does each attachment of this mode need a pod namespace of its own?
    fn needs_pod(self) -> bool {
        matches!(self, Mode::GwClient | Mode::Sbr)
    }

    fn ifname(self) -> &'static str {
        match self {
            Mode::GwClient => "net1",
            _ => "eth0",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Verb {
    Add,
    Del,
}

impl Verb {
    fn env(self) -> &'static str {
        match self {
            Verb::Add => "ADD",
            Verb::Del => "DEL",
        }
    }
}

/// Whether a mode can be measured in this build.
#[derive(Clone, Debug)]
enum Availability {
    Yes,
    NotBuilt(String),
    Failed(String),
}

/// A pod namespace: its name, path and interface.
#[derive(Clone)]
struct Pod {
    ns: String,
    path: String,
    index: usize,
}

/// Primary-network addresses of pod `i` (bridge + host-local style).
fn pod_v4(i: usize) -> (String, String) {
    let (a, b) = (1 + i / 250, 2 + i % 250);
    (format!("10.244.{a}.{b}/24"), format!("10.244.{a}.1"))
}

fn pod_v6(i: usize) -> (String, String) {
    let (a, b) = (1 + i / 250, 2 + i % 250);
    (
        format!("fd00:244:0:{a:x}::{b:x}/64"),
        format!("fd00:244:0:{a:x}::1"),
    )
}

/// Gateway-network address of client pod `i` (router is 172.20.0.1/16).
fn gw_addr(i: usize) -> String {
    let n = i + 10;
    format!("172.20.{}.{}/16", n / 250, 1 + n % 250)
}

const GW_ROUTER: &str = "172.20.0.1";

/// The prevResult a primary plugin would have passed on.
fn prev_result(mode: Mode, i: usize, sandbox: &str) -> Value {
    let mac = format!("0a:58:00:00:{:02x}:{:02x}", (i >> 8) & 0xff, i & 0xff);
    if mode == Mode::GwClient {
        return json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "gwbr0", "mac": "0a:58:ac:14:00:01"},
                {"name": format!("gn{i}"), "mac": "0a:58:ac:14:ff:ff"},
                {"name": "net1", "mac": mac, "sandbox": sandbox}
            ],
            "ips": [{"interface": 2, "address": gw_addr(i)}],
            "dns": {}
        });
    }
    // The measured pod of a whole-network mode is one more pod of the
    // subnet the pre-populated ones hold (10.244.1.0/24 holds the first
    // 250): at 100 and 1000 attachments its ADD and DEL meet the subnet's
    // objects made, as a pod start does on a node that has pods of that
    // subnet; at 0 it is the subnet's first and last pod.
    let ((a4, g4), (a6, g6)) = if mode.whole_network() && i == MEASURED {
        let (v4, v6) = WHOLE_MEASURED;
        (
            (format!("{v4}/24"), "10.244.1.1".to_string()),
            (format!("{v6}/64"), "fd00:244:0:1::1".to_string()),
        )
    } else {
        (pod_v4(i), pod_v6(i))
    };
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni0", "mac": "0a:58:0a:f4:00:01"},
            {"name": format!("veth{i:08x}"), "mac": "0a:58:0a:f4:ff:ff"},
            {"name": "eth0", "mac": mac, "sandbox": sandbox}
        ],
        "ips": [
            {"interface": 2, "address": a4, "gateway": g4},
            {"interface": 2, "address": a6, "gateway": g6}
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
        "dns": {}
    })
}

/// One node namespace with `level` attachments of every available mode.
struct Node {
    level: usize,
    ns: String,
    file: File,
    /// The node namespace of the whole-network modes.
    whole: File,
    state: PathBuf,
    /// Pod of the measured sbr attachment; its path is also the (unused)
    /// `CNI_NETNS` of the node-side gwsteer modes.
    sbr_pod: Pod,
    /// Measured gateway-network client pod, when that mode is available.
    gw_pod: Option<Pod>,
    gw_ready: bool,
    veths: usize,
}

impl Node {
    /// The node namespace `mode`'s plugins run in.
    fn file_for(&self, mode: Mode) -> &File {
        if mode.own_node() {
            &self.whole
        } else {
            &self.file
        }
    }
}

struct Lab {
    prefix: String,
    scratch: Scratch,
    gwsteer: PathBuf,
    sbr: PathBuf,
    /// The alternative gwsteer build and its label, if any.
    alt: Option<(PathBuf, String)>,
    nodes: Vec<Node>,
}

impl Lab {
    fn log_file(&self, node: &Node, mode: Mode, what: &str) -> PathBuf {
        node.state.join(format!("{}-{what}.log", mode.tag()))
    }

    /// The plugin config for `mode`, as a runtime would pass it.
    fn config(&self, node: &Node, mode: Mode, i: usize, sandbox: &str, log: &str) -> Value {
        let prev = prev_result(mode, i, sandbox);
        let log_file = self.log_file(node, mode, log).display().to_string();
        let level = if log == "concurrent" { "debug" } else { "info" };
        let gateways =
            json!([{"via": "192.168.2.1", "dev": "eth-b"}, {"via": "fd00:2::1", "dev": "eth-b"}]);
        let mut conf = json!({
            "cniVersion": "1.0.0",
            "name": mode.network(),
            "type": if mode.is_gwsteer() { "gwsteer" } else { "sbr" },
            "prevResult": prev,
        });
        if mode.is_gwsteer() {
            conf["stateDir"] = json!(node.state.display().to_string());
            conf["logFile"] = json!(log_file);
            conf["logLevel"] = json!(level);
        }
        match mode {
            Mode::Source | Mode::SourceAlt => {
                conf["steering"] = json!([{
                    "name": "oam", "table": SOURCE_TABLE, "priority": SOURCE_PRIORITY,
                    "gateways": gateways, "exclude": SOURCE_EXCLUDE
                }]);
            }
            Mode::Subnet => {
                conf["steering"] = json!([{
                    "name": "oamnet", "table": 300, "priority": 3000, "scope": "subnet",
                    "gateways": gateways, "exclude": SOURCE_EXCLUDE
                }]);
            }
            Mode::Connmark => {
                conf["firewallBackend"] = json!("nftables");
                conf["steering"] = json!([{
                    "name": "oamc", "table": 200, "priority": 2000,
                    "match": "connmark", "mark": "0x14", "ingressInterfaces": ["eth-b"],
                    "gateways": gateways
                }]);
            }
            Mode::Mark => {
                conf["firewallBackend"] = json!("nftables");
                conf["steering"] = json!([{
                    "name": "oamk", "table": 220, "priority": 2200,
                    "match": "mark", "mark": "0x16", "egressTo": ["203.0.113.0/24", "2001:db8::/32"],
                    "gateways": gateways
                }]);
            }
            Mode::ConnmarkSubnet => {
                conf["firewallBackend"] = json!("nftables");
                conf["steering"] = json!([{
                    "name": "oamcn", "table": 210, "priority": 2100, "scope": "subnet",
                    "match": "connmark", "mark": "0x15", "ingressInterfaces": ["eth-b"],
                    "gateways": gateways
                }]);
            }
            Mode::GwClient => {
                conf["gatewayNetwork"] = json!({
                    "bridge": "gwbr0", "role": "client", "router": GW_ROUTER,
                    "routes": ["0.0.0.0/0"], "keep": ["10.244.0.0/16", "10.96.0.0/12"]
                });
            }
            Mode::VrfPod | Mode::VrfCidr => {
                // Each its own VRF, table and legs (the infrastructure stays
                // until `gwsteer cleanup`); the per-pod work is the leak.
                let (name, table, leg, n) = if mode == Mode::VrfPod {
                    ("vrf-bp", 10, "bp", 1)
                } else {
                    ("vrf-bc", 11, "bc", 2)
                };
                conf["vrf"] = json!({
                    "name": name, "table": table,
                    "legs": {
                        "host": {"name": format!("{leg}-host"),
                                 "addresses": [format!("169.254.{n}.1/30"), format!("fd00:a9fe:{n}::1/126")]},
                        "vrf": {"name": format!("{leg}-vrf"),
                                "addresses": [format!("169.254.{n}.2/30"), format!("fd00:a9fe:{n}::2/126")]}
                    }
                });
                if mode == Mode::VrfCidr {
                    conf["vrf"]["leak"] = json!("cidr");
                    conf["vrf"]["podCidrs"] = json!(["10.244.0.0/16", "fd00:244::/48"]);
                }
            }
            Mode::PodSide => {
                // The gateways are prevResult's, as sbr takes the interface's.
                conf["steering"] = json!([{
                    "name": "lan", "side": "pod", "priority": SOURCE_PRIORITY,
                    "exclude": SOURCE_EXCLUDE
                }]);
            }
            Mode::Sbr => {}
        }
        conf
    }

    fn invocation(
        &self,
        node: &Node,
        mode: Mode,
        verb: Verb,
        i: usize,
        pod: &Pod,
        log: &str,
    ) -> Invocation {
        let cid = format!("bench{}-{}", node.level, i);
        let program = match (mode, &self.alt) {
            (Mode::SourceAlt, Some((alt, _))) => alt.clone(),
            (Mode::Sbr, _) => self.sbr.clone(),
            _ => self.gwsteer.clone(),
        };
        let gw_dir = self
            .gwsteer
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let env = vec![
            ("CNI_COMMAND".into(), verb.env().into()),
            ("CNI_CONTAINERID".into(), cid.clone()),
            ("CNI_NETNS".into(), pod.path.clone()),
            ("CNI_IFNAME".into(), mode.ifname().into()),
            ("CNI_PATH".into(), format!("{gw_dir}:{REFERENCE_DIR}")),
            (
                "CNI_ARGS".into(),
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-{i};K8S_POD_INFRA_CONTAINER_ID={cid}"
                ),
            ),
            ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ];
        let conf = self.config(node, mode, i, &pod.path, log);
        Invocation {
            program,
            args: Vec::new(),
            env,
            stdin: serde_json::to_vec(&conf).unwrap_or_default(),
        }
    }

    /// The pod the attachment `i` of `mode` on `node` lives in.
    fn pod_for(&self, node: &Node, mode: Mode, i: usize) -> Pod {
        match mode {
            Mode::GwClient if i == MEASURED => {
                node.gw_pod.clone().unwrap_or_else(|| node.sbr_pod.clone())
            }
            Mode::GwClient => Pod {
                ns: format!("{}-n{}-g{i}", self.prefix, node.level),
                path: format!("/run/netns/{}-n{}-g{i}", self.prefix, node.level),
                index: i,
            },
            Mode::Sbr | Mode::PodSide if i == MEASURED => node.sbr_pod.clone(),
            Mode::PodSide => Pod {
                ns: format!("{}-n{}-p{i}", self.prefix, node.level),
                path: format!("/run/netns/{}-n{}-p{i}", self.prefix, node.level),
                index: i,
            },
            Mode::Sbr => Pod {
                ns: format!("{}-n{}-s{i}", self.prefix, node.level),
                path: format!("/run/netns/{}-n{}-s{i}", self.prefix, node.level),
                index: i,
            },
            _ => node.sbr_pod.clone(),
        }
    }
}

/// Node setup: an uplink `eth-b` to a router namespace holding both
/// gateways (192.168.2.1, fd00:2::1), so the owned table's routes resolve.
fn make_node(prefix: &str, level: usize) -> Res<Node> {
    let ns = format!("{prefix}-n{level}");
    let file = node_netns(&ns)?;
    // The whole-network mode's own node: on a real node with whole-network
    // policies the kernel's rule list holds a few rules, not the 5000 of
    // the per-pod `source` attachments pre-populated here.
    let whole = node_netns(&format!("{ns}-w"))?;
    let state = PathBuf::from(format!("/dev/shm/gwsteer-bench-{}", std::process::id()))
        .join(format!("n{level}"));
    fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;
    let sbr_ns = format!("{ns}-sbr");
    let sbr_pod = Pod {
        path: format!("/run/netns/{sbr_ns}"),
        ns: sbr_ns,
        index: MEASURED,
    };
    let mut node = Node {
        level,
        ns,
        file,
        whole,
        state,
        sbr_pod: sbr_pod.clone(),
        gw_pod: None,
        gw_ready: false,
        veths: 0,
    };
    make_sbr_pod(&mut node, &sbr_pod)?;
    Ok(node)
}

/// A node namespace `ns` with its uplink `eth-b` to a router namespace
/// holding both gateways.
fn node_netns(ns: &str) -> Res<File> {
    let ns = ns.to_string();
    let router = format!("{ns}-rtr");
    let file = netns_add(&ns)?;
    netns_add(&router)?;
    ip_batch(
        &ns,
        false,
        &[
            format!("link add eth-b type veth peer name down0 netns {router}"),
            "link set dev eth-b up".into(),
            "address add 192.168.2.2/24 dev eth-b".into(),
            "address add fd00:2::2/64 dev eth-b nodad".into(),
        ],
    )?;
    ip_batch(
        &router,
        false,
        &[
            "link set dev down0 up".into(),
            "address add 192.168.2.1/24 dev down0".into(),
            "address add fd00:2::1/64 dev down0 nodad".into(),
        ],
    )?;
    Ok(file)
}

/// A pod namespace with `eth0` (veth to the node) carrying pod `index`'s
/// primary addresses and default routes, as bridge + host-local leave it.
fn make_sbr_pod(node: &mut Node, pod: &Pod) -> Res<()> {
    netns_add(&pod.ns)?;
    node.veths += 1;
    let host = format!("vp{}", node.veths);
    ip_batch(
        &node.ns,
        false,
        &[
            format!("link add {host} type veth peer name eth0 netns {}", pod.ns),
            format!("link set dev {host} up"),
        ],
    )?;
    reset_sbr_pod(pod)
}

/// Back to the state a primary plugin leaves: sbr moves the interface's
/// routes out of `main` into tables it picks from 100 on and its DEL only
/// removes rules, so a second ADD on the same interface fails ("file
/// exists"). Outside the timed region, each iteration flushes those tables,
/// re-creates addresses (down/up restores the link-local route) and routes.
fn reset_sbr_pod(pod: &Pod) -> Res<()> {
    let flush = |v6| -> Res<()> {
        let lines: Vec<String> = (100..=103)
            .map(|t| format!("route flush table {t}"))
            .collect();
        ip_batch(&pod.ns, v6, &lines)
    };
    flush(false)?;
    flush(true)?;
    let (a4, g4) = pod_v4(pod.index);
    let (a6, g6) = pod_v6(pod.index);
    ip_batch(
        &pod.ns,
        false,
        &[
            "address flush dev eth0".into(),
            "link set dev eth0 down".into(),
            "link set dev eth0 up".into(),
            format!("address add {a4} dev eth0"),
            format!("address add {a6} dev eth0 nodad"),
            format!("route add default via {g4} dev eth0"),
            format!("route add default via {g6} dev eth0"),
        ],
    )
}

/// Routes, rules and addresses of a pod, normalised, to prove the reset.
fn snapshot(ns: &str) -> Res<String> {
    let mut parts = Vec::new();
    for args in [
        ["-j", "-4", "route", "show", "table", "all"],
        ["-j", "-6", "route", "show", "table", "all"],
        ["-j", "-4", "rule", "show", "", ""],
        ["-j", "-6", "rule", "show", "", ""],
        ["-j", "-4", "address", "show", "", ""],
        ["-j", "-6", "address", "show", "", ""],
    ] {
        let mut full = vec!["-n", ns];
        full.extend(args.iter().filter(|a| !a.is_empty()));
        let text = run("ip", &full)?;
        let v: Value = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
        let mut items: Vec<String> = match v {
            Value::Array(a) => a
                .into_iter()
                .map(|mut x| {
                    // Address lifetimes and counters tick; the rest must not move.
                    if let Some(infos) = x.get_mut("addr_info").and_then(Value::as_array_mut) {
                        for i in infos {
                            if let Some(o) = i.as_object_mut() {
                                o.remove("valid_life_time");
                                o.remove("preferred_life_time");
                            }
                        }
                    }
                    x.to_string()
                })
                .collect(),
            other => vec![other.to_string()],
        };
        items.sort();
        parts.push(items.join("\n"));
    }
    Ok(parts.join("\n--\n"))
}

/// Gateway network on a node: bridge `gwbr0` (as the primary bridge plugin
/// of the gateway network would have made it) and a router pod on it.
fn make_gw_infra(prefix: &str, node: &mut Node) -> Res<()> {
    if node.gw_ready {
        return Ok(());
    }
    let router = format!("{prefix}-n{}-gwr", node.level);
    netns_add(&router)?;
    ip_batch(
        &node.ns,
        false,
        &[
            "link add gwbr0 type bridge".into(),
            "link set dev gwbr0 up".into(),
            format!("link add gwr type veth peer name net1 netns {router}"),
            "link set dev gwr master gwbr0".into(),
            "link set dev gwr up".into(),
        ],
    )?;
    ip_batch(
        &router,
        false,
        &[
            "link set dev net1 up".into(),
            format!("address add {GW_ROUTER}/16 dev net1"),
        ],
    )?;
    node.gw_ready = true;
    Ok(())
}

/// A gateway-network client pod: `eth0` on the primary network (default
/// route) and `net1` on `gwbr0`, as bridge + Multus leave it.
fn make_gw_pod(node: &mut Node, pod: &Pod) -> Res<()> {
    netns_add(&pod.ns)?;
    node.veths += 1;
    let (e, g) = (format!("ve{}", node.veths), format!("vg{}", node.veths));
    ip_batch(
        &node.ns,
        false,
        &[
            format!("link add {e} type veth peer name eth0 netns {}", pod.ns),
            format!("link set dev {e} up"),
            format!("link add {g} type veth peer name net1 netns {}", pod.ns),
            format!("link set dev {g} master gwbr0"),
            format!("link set dev {g} up"),
        ],
    )?;
    let (a4, g4) = pod_v4(pod.index);
    ip_batch(
        &pod.ns,
        false,
        &[
            "link set dev eth0 up".into(),
            "link set dev net1 up".into(),
            format!("address add {a4} dev eth0"),
            format!("route add default via {g4} dev eth0"),
            format!("address add {} dev net1", gw_addr(pod.index)),
        ],
    )
}

// ---------------------------------------------------------------- statistics

#[derive(Default, Clone)]
struct Samples {
    wall_ms: Vec<f64>,
    cpu_ms: Vec<f64>,
}

impl Samples {
    fn push(&mut self, o: &Outcome) {
        self.wall_ms.push(o.wall.as_secs_f64() * 1e3);
        self.cpu_ms.push(o.cpu.as_secs_f64() * 1e3);
    }
}

/// Nearest-rank percentile.
fn pct(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "–".into()
    } else {
        format!("{:.2}", a / b)
    }
}

// ---------------------------------------------------------------- the run

struct Options {
    out: Option<PathBuf>,
    /// Attachments already on the node, one node namespace each, ascending.
    levels: Vec<usize>,
    iterations: usize,
    concurrent: usize,
    /// The modes measured: without `--vrf` every mode but the VRF ones;
    /// with it the VRF modes and sbr (run in the VRF guest:
    /// `benches/run-vrf.sh`).
    modes: Vec<Mode>,
    /// `--no-profile`: no strace/perf pass (slow under emulation).
    profile: bool,
    /// `--local-copies` (implied by `--vrf`): run copies of gwsteer and sbr
    /// from the benchmark's tmpfs directory. In the VRF guest the host's
    /// files are on 9p, where every page an exec touches is read over the
    /// virtual transport: it would measure 9p, not the plugins.
    local_copies: bool,
}

fn options() -> Res<Options> {
    let mut o = Options {
        out: None,
        levels: LEVELS.to_vec(),
        iterations: 300,
        concurrent: 100,
        modes: MODES.into_iter().filter(|m| !m.is_vrf()).collect(),
        profile: true,
        local_copies: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Res<usize> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name} needs a positive number"))
        };
        match a.as_str() {
            "--bench" => {}
            "--iterations" => o.iterations = num("--iterations")?,
            "--concurrent" => o.concurrent = num("--concurrent")?,
            "--vrf" => {
                // `source` too: the row the host's table has, measured in
                // the same guest, shows how emulation moves the ratios.
                o.modes = MODES
                    .into_iter()
                    .filter(|m| m.is_vrf() || matches!(m, Mode::Source | Mode::Sbr))
                    .collect();
                o.local_copies = true;
            }
            "--no-profile" => o.profile = false,
            "--local-copies" => o.local_copies = true,
            "--levels" => {
                let v: Option<Vec<usize>> = args
                    .next()
                    .map(|l| l.split(',').map(|n| n.trim().parse().ok()).collect())
                    .unwrap_or(None);
                o.levels = match v {
                    Some(mut v) if !v.is_empty() => {
                        v.sort_unstable();
                        v.dedup();
                        v
                    }
                    _ => return Err("--levels needs a list like 0,100,1000".into()),
                };
            }
            "--out" => {
                o.out = Some(
                    args.next()
                        .map(PathBuf::from)
                        .ok_or("--out needs a file name")?,
                )
            }
            other if other.starts_with("--") => {} // cargo's own flags
            _ => {}
        }
    }
    Ok(o)
}

/// Everything the report needs.
#[derive(Default)]
struct Results {
    /// (level, mode, verb) → samples
    calls: BTreeMap<(usize, Mode, Verb), Samples>,
    /// exec floor and startup probes → samples
    probes: BTreeMap<&'static str, Samples>,
    /// (level, mode, verb) → max ru_maxrss KiB over RSS_RUNS via the launcher
    rss: BTreeMap<(usize, Mode, Verb), i64>,
    /// probe → ru_maxrss KiB via the launcher / directly
    probe_rss: BTreeMap<&'static str, (Option<i64>, i64)>,
    /// (level, mode, verb) → µs gwsteer logged for the verb's own work
    logged_us: BTreeMap<(usize, Mode, Verb), Vec<f64>>,
    availability: BTreeMap<Mode, Availability>,
    concurrent: BTreeMap<Mode, ConcurrentResult>,
    profile: Vec<(String, String)>,
    node_rules: BTreeMap<usize, usize>,
    /// (level, verb) → samples of the rules helper (the kernel's share)
    rules_share: BTreeMap<(usize, Verb), Samples>,
    notes: Vec<String>,
    started: String,
    finished: String,
    load_start: String,
    load_end: String,
}

struct ConcurrentResult {
    n: usize,
    add_wall: Duration,
    del_wall: Duration,
    add_failed: Vec<String>,
    del_failed: Vec<String>,
    /// Max lock wait over the ADDs / DELs from gwsteer's debug log, µs.
    add_lock_max_us: Option<u64>,
    del_lock_max_us: Option<u64>,
    /// One more ADD started 20 ms into the DEL burst: a pod start while
    /// other pods go.
    add_amid_dels: Option<Outcome>,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benches/cni.rs: a benchmark; run it as root with `cargo bench --bench cni`");
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the CNI benchmark builds network namespaces: run it as root");
        std::process::exit(2);
    }
    let opts = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let code = {
        let _guard = CleanupGuard;
        match bench(&opts) {
            Ok(()) => 0,
            // The signal thread is removing everything and will exit.
            Err(_) if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) => loop {
                std::thread::park();
            },
            Err(e) => {
                eprintln!("benchmark failed: {e}");
                1
            }
        }
    };
    std::process::exit(code);
}

fn bench(opts: &Options) -> Res<()> {
    if let Ok(f) = File::open("/proc/self/ns/net") {
        let _ = ORIGINAL_NS.set(f);
    }
    install_signal_cleanup()?;
    remove_stale();
    let gwsteer =
        PathBuf::from(std::env::var("GWSTEER_BIN").unwrap_or_else(|_| GWSTEER_BIN.into()));
    if !gwsteer.exists() {
        return Err(format!("{} not found: build it first", gwsteer.display()));
    }
    if !Path::new(SBR_BIN).exists() {
        return Err(format!(
            "{SBR_BIN} not found: apt-get install containernetworking-plugins"
        ));
    }
    let prefix = prefix();
    let root = PathBuf::from(format!("/dev/shm/gwsteer-bench-{}", std::process::id()));
    lock(&CREATED_DIRS).push(root.clone());
    let scratch_dir = root.join("scratch");
    fs::create_dir_all(&scratch_dir).map_err(|e| format!("{}: {e}", scratch_dir.display()))?;
    let helpers = build_helpers(&scratch_dir);
    let mut res = Results {
        started: utc_now(),
        load_start: loadavg(),
        ..Results::default()
    };
    if !helpers.compile_note.is_empty() {
        res.notes.push(helpers.compile_note.clone());
    }

    eprintln!(
        "setting up {} node namespaces ({prefix}-…)",
        opts.levels.len()
    );
    let alt = match std::env::var("GWSTEER_BENCH_ALT_BIN") {
        Ok(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            if !p.exists() {
                return Err(format!("GWSTEER_BENCH_ALT_BIN: {} not found", p.display()));
            }
            let label = std::env::var("GWSTEER_BENCH_ALT_LABEL")
                .unwrap_or_else(|_| p.display().to_string());
            Some((p, label))
        }
        _ => None,
    };
    let (gwsteer, sbr) = if opts.local_copies {
        let bin = root.join("bin");
        fs::create_dir_all(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
        let copy = |from: &Path, name: &str| -> Res<PathBuf> {
            let to = bin.join(name);
            fs::copy(from, &to).map_err(|e| format!("copying {}: {e}", from.display()))?;
            Ok(to)
        };
        (copy(&gwsteer, "gwsteer")?, copy(Path::new(SBR_BIN), "sbr")?)
    } else {
        (gwsteer, PathBuf::from(SBR_BIN))
    };
    let mut lab = Lab {
        prefix: prefix.clone(),
        scratch: Scratch { dir: scratch_dir },
        gwsteer,
        sbr,
        alt,
        nodes: Vec::new(),
    };
    for &level in &opts.levels {
        let node = make_node(&prefix, level)?;
        lab.nodes.push(node);
    }
    // From here on this thread (and every plugin it spawns) lives in a node namespace.
    enter(&lab.nodes[0].file)?;

    check_sbr_reset(&lab)?;
    for &mode in &opts.modes {
        if mode == Mode::SourceAlt && lab.alt.is_none() {
            continue;
        }
        // A mode whose set-up fails is reported as failed; the rest go on.
        let a = probe_mode(&mut lab, mode).unwrap_or_else(Availability::Failed);
        eprintln!("{}: {a:?}", mode.label());
        res.availability.insert(mode, a);
    }
    let available: Vec<Mode> = MODES
        .into_iter()
        .filter(|m| matches!(res.availability.get(m), Some(Availability::Yes)))
        .collect();

    prepopulate(&mut lab, &available, &mut res)?;
    let available = still_available(&res, &available);
    main_loop(&lab, &available, &helpers, opts.iterations, &mut res)?;
    let available = still_available(&res, &available);
    rss_pass(&lab, &available, &helpers, &mut res)?;
    collect_logged(&lab, &available, &mut res);
    concurrent(&mut lab, &available, opts.concurrent, &mut res)?;
    if opts.profile {
        profile(&lab, &available, &mut res)?;
    }

    res.finished = utc_now();
    res.load_end = loadavg();
    let report = report(&lab, &available, opts, &helpers, &res);
    print!("{report}");
    if let Some(out) = &opts.out {
        fs::write(out, &report).map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// One sbr ADD/DEL on the measured pod, then the reset: the pod must be
/// exactly as before, or the sbr numbers would not be comparable.
fn check_sbr_reset(lab: &Lab) -> Res<()> {
    let node = &lab.nodes[0];
    let pod = &node.sbr_pod;
    let before = snapshot(&pod.ns)?;
    for verb in [Verb::Add, Verb::Del] {
        let o = measure(
            &lab.invocation(node, Mode::Sbr, verb, MEASURED, pod, "x"),
            &lab.scratch,
        )?;
        if !o.ok() {
            return Err(format!("sbr {verb:?} failed: {}", o.describe()));
        }
    }
    reset_sbr_pod(pod)?;
    let after = snapshot(&pod.ns)?;
    if before != after {
        return Err(format!(
            "the sbr pod does not return to its state after ADD, DEL and reset:\nbefore:\n{before}\nafter:\n{after}"
        ));
    }
    Ok(())
}

/// Can this build do `mode`? One real ADD (and DEL) on the level-0 node.
fn probe_mode(lab: &mut Lab, mode: Mode) -> Res<Availability> {
    if mode == Mode::Sbr {
        return Ok(Availability::Yes);
    }
    if mode == Mode::GwClient {
        // The config is refused before anything touches the kernel when the
        // feature is not there: find out before building the pods.
        let node = &lab.nodes[0];
        let probe = lab.invocation(node, mode, Verb::Del, MEASURED, &node.sbr_pod, "probe");
        let o = measure(&probe, &lab.scratch)?;
        if let Some(a) = not_built(&o) {
            return Ok(a);
        }
        let prefix = lab.prefix.clone();
        for node in &mut lab.nodes {
            make_gw_infra(&prefix, node)?;
            let pod = Pod {
                ns: format!("{prefix}-n{}-gwm", node.level),
                path: format!("/run/netns/{prefix}-n{}-gwm", node.level),
                index: MEASURED,
            };
            make_gw_pod(node, &pod)?;
            node.gw_pod = Some(pod);
        }
    }
    let node = &lab.nodes[0];
    let pod = lab.pod_for(node, mode, MEASURED);
    let add = measure(
        &lab.invocation(node, mode, Verb::Add, MEASURED, &pod, "probe"),
        &lab.scratch,
    )?;
    if !add.ok() {
        return Ok(not_built(&add).unwrap_or_else(|| Availability::Failed(add.error_msg())));
    }
    let del = measure(
        &lab.invocation(node, mode, Verb::Del, MEASURED, &pod, "probe"),
        &lab.scratch,
    )?;
    if !del.ok() {
        return Ok(Availability::Failed(format!("DEL: {}", del.error_msg())));
    }
    Ok(Availability::Yes)
}

/// A refusal that means "this gwsteer does not have the feature yet".
fn not_built(o: &Outcome) -> Option<Availability> {
    if o.ok() {
        return None;
    }
    let msg = o.error_msg();
    let unsupported = o.error_code() == Some(2);
    (unsupported || msg.contains("not built yet") || msg.contains("not supported"))
        .then_some(Availability::NotBuilt(msg))
}

/// `level` attachments of every available gwsteer mode on each node.
fn prepopulate(lab: &mut Lab, available: &[Mode], res: &mut Results) -> Res<()> {
    for n in 0..lab.nodes.len() {
        let level = lab.nodes[n].level;
        // The plugins must run in this node's namespace, not the last one entered.
        enter(&lab.nodes[n].file)?;
        // The pod side has nothing on the node: like sbr's, its cost does
        // not depend on the node's attachments, and each needs a pod of its
        // own; it is measured without background attachments, as sbr is.
        for &mode in available
            .iter()
            .filter(|m| m.is_gwsteer() && !matches!(m, Mode::SourceAlt | Mode::PodSide))
        {
            enter(lab.nodes[n].file_for(mode))?;
            if level > 0 {
                eprintln!(
                    "node {level}: pre-populating {level} {} attachments",
                    mode.label()
                );
            }
            if !is_available(res, mode) {
                continue;
            }
            let mut fill = || -> Res<()> {
                for i in 0..level {
                    if mode.needs_pod() {
                        let pod = lab.pod_for(&lab.nodes[n], mode, i);
                        make_gw_pod(&mut lab.nodes[n], &pod)?;
                    }
                    let node = &lab.nodes[n];
                    let pod = lab.pod_for(node, mode, i);
                    let o = measure(
                        &lab.invocation(node, mode, Verb::Add, i, &pod, "prepopulate"),
                        &lab.scratch,
                    )?;
                    if !o.ok() {
                        return Err(format!("#{i} on node {level}: {}", o.error_msg()));
                    }
                }
                Ok(())
            };
            if let Err(e) = fill() {
                eprintln!("{}: pre-population failed: {e}", mode.label());
                res.availability
                    .insert(mode, Availability::Failed(format!("pre-population {e}")));
            }
        }
        let rules = count_rules(&lab.nodes[n].ns)?;
        // 5 default rules (3 IPv4, 2 IPv6), 5 per source attachment.
        let want = 5 + if is_available(res, Mode::Source) {
            5 * level
        } else {
            0
        };
        if rules < want {
            return Err(format!(
                "node {level}: {rules} rules after pre-population, expected at least {want}"
            ));
        }
        res.node_rules.insert(level, rules);
    }
    enter(&lab.nodes[0].file)?;
    Ok(())
}

fn count_rules(ns: &str) -> Res<usize> {
    let mut n = 0;
    for fam in ["-4", "-6"] {
        let text = run("ip", &["-n", ns, "-j", fam, "rule", "show"])?;
        let v: Value = serde_json::from_str(text.trim()).map_err(|e| format!("ip rule: {e}"))?;
        n += v.as_array().map_or(0, Vec::len);
    }
    Ok(n)
}

/// Every iteration runs, in an order shuffled anew each time: each (level,
/// mode) ADD then DEL, the rules helper per level, the exec floor, and the
/// do-almost-nothing VERSION call of gwsteer and sbr (process start-up
/// cost). Shuffled, because a call right after another that walked the same
/// node's rule list finds it in the CPU caches: a fixed or rotating order
/// made the row after `source` (the alt build) look faster at 1000
/// attachments than `source` itself.
fn main_loop(
    lab: &Lab,
    available: &[Mode],
    helpers: &Helpers,
    iterations: usize,
    res: &mut Results,
) -> Res<()> {
    #[derive(Clone, Copy)]
    enum Task {
        Pair(usize, Mode),
        Probe(&'static str),
        /// The rules helper's add then del on node n.
        Rules(usize),
    }
    let probes = probe_invocations(lab, helpers);
    let mut tasks = Vec::new();
    for n in 0..lab.nodes.len() {
        for &m in available {
            tasks.push(Task::Pair(n, m));
        }
    }
    for (name, _) in &probes {
        tasks.push(Task::Probe(name));
    }
    if available.contains(&Mode::Source) && helpers.rules.is_some() {
        for n in 0..lab.nodes.len() {
            tasks.push(Task::Rules(n));
        }
    }
    let rules_inv = |verb: Verb| {
        helpers.rules.as_ref().map(|p| Invocation {
            program: p.clone(),
            args: rules_helper_args(verb),
            env: Vec::new(),
            stdin: Vec::new(),
        })
    };
    let (rules_add, rules_del) = (rules_inv(Verb::Add), rules_inv(Verb::Del));
    // Per node and mode: invocations built once.
    let mut pairs = BTreeMap::new();
    for (n, node) in lab.nodes.iter().enumerate() {
        for &m in available {
            let pod = lab.pod_for(node, m, MEASURED);
            pairs.insert(
                (n, m),
                (
                    lab.invocation(node, m, Verb::Add, MEASURED, &pod, "measured"),
                    lab.invocation(node, m, Verb::Del, MEASURED, &pod, "measured"),
                    pod,
                ),
            );
        }
    }
    eprintln!("measuring: {iterations} iterations × {} tasks", tasks.len());
    let report_every = (iterations / 10).max(1);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for it in 0..iterations {
        if it % report_every == 0 {
            eprintln!("  iteration {it}/{iterations}");
        }
        rng.shuffle(&mut tasks);
        for task in &tasks {
            match *task {
                Task::Probe(name) => {
                    enter(&lab.nodes[0].file)?;
                    let inv = &probes.iter().find(|(n, _)| *n == name).ok_or("probe")?.1;
                    let o = measure(inv, &lab.scratch)?;
                    if !o.ok() {
                        return Err(format!("{name}: {}", o.describe()));
                    }
                    res.probes.entry(name).or_default().push(&o);
                }
                Task::Rules(n) => {
                    let node = &lab.nodes[n];
                    enter(&node.file)?;
                    let (Some(add), Some(del)) = (&rules_add, &rules_del) else {
                        continue;
                    };
                    for (verb, inv) in [(Verb::Add, add), (Verb::Del, del)] {
                        let o = measure(inv, &lab.scratch)?;
                        if !o.ok() {
                            return Err(format!(
                                "rules helper {verb:?} on node {}: {}",
                                node.level,
                                o.describe()
                            ));
                        }
                        if it == 0 {
                            verify_rules_from(node, RULES_POD.0, verb == Verb::Add)?;
                        }
                        res.rules_share
                            .entry((node.level, verb))
                            .or_default()
                            .push(&o);
                    }
                }
                Task::Pair(n, mode) => {
                    let node = &lab.nodes[n];
                    enter(node.file_for(mode))?;
                    let (add, del, pod) = &pairs[&(n, mode)];
                    if !is_available(res, mode) {
                        continue;
                    }
                    let a = measure(add, &lab.scratch)?;
                    if !a.ok() {
                        let why = format!("ADD on node {}: {}", node.level, a.error_msg());
                        eprintln!("{}: {why}; no longer measured", mode.label());
                        res.availability.insert(mode, Availability::Failed(why));
                        continue;
                    }
                    if it == 0 && mode == Mode::Source {
                        verify_source_rules(node, true)?;
                    }
                    let d = measure(del, &lab.scratch)?;
                    if !d.ok() {
                        let why = format!("DEL on node {}: {}", node.level, d.error_msg());
                        eprintln!("{}: {why}; no longer measured", mode.label());
                        res.availability.insert(mode, Availability::Failed(why));
                        continue;
                    }
                    if it == 0 && mode == Mode::Source {
                        verify_source_rules(node, false)?;
                    }
                    if mode == Mode::Sbr {
                        reset_sbr_pod(pod)?;
                    }
                    res.calls
                        .entry((node.level, mode, Verb::Add))
                        .or_default()
                        .push(&a);
                    res.calls
                        .entry((node.level, mode, Verb::Del))
                        .or_default()
                        .push(&d);
                }
            }
        }
    }
    enter(&lab.nodes[0].file)?;
    Ok(())
}

/// xorshift64: a fixed-seed shuffle, so that a rerun measures the same orders.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// The modes this run set out to measure (available or not), in report order.
fn run_modes(res: &Results) -> impl Iterator<Item = Mode> + '_ {
    MODES
        .into_iter()
        .filter(|m| res.availability.contains_key(m))
}

fn is_available(res: &Results, mode: Mode) -> bool {
    matches!(res.availability.get(&mode), Some(Availability::Yes))
}

/// Modes still measurable (a mode that failed on the way is dropped).
fn still_available(res: &Results, modes: &[Mode]) -> Vec<Mode> {
    modes
        .iter()
        .copied()
        .filter(|m| is_available(res, *m))
        .collect()
}

/// After the measured ADD the node has the pod's 3 IPv4 and 2 IPv6 rules;
/// after DEL none.
fn verify_source_rules(node: &Node, present: bool) -> Res<()> {
    let (a4, _) = pod_v4(MEASURED);
    verify_rules_from(node, &a4, present)
}

/// The 3 IPv4 rules of `source` from `addr` (with or without a prefix length)
/// are there, or none is.
fn verify_rules_from(node: &Node, addr: &str, present: bool) -> Res<()> {
    let ip4 = addr.split('/').next().unwrap_or_default();
    let text = run("ip", &["-n", &node.ns, "-4", "rule", "show", "from", ip4])?;
    let n = text.lines().filter(|l| !l.trim().is_empty()).count();
    let want = if present { 3 } else { 0 };
    if n != want {
        return Err(format!(
            "node {}: expected {want} rules from {ip4}, found {n}:\n{text}",
            node.level
        ));
    }
    Ok(())
}

/// The floor (a static do-nothing binary, and /bin/true) and the start-up
/// cost of each plugin (CNI VERSION: read stdin, print a line).
fn probe_invocations(lab: &Lab, helpers: &Helpers) -> Vec<(&'static str, Invocation)> {
    let plain = |p: PathBuf| Invocation {
        program: p,
        args: Vec::new(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        stdin: Vec::new(),
    };
    let version = |p: PathBuf| Invocation {
        program: p,
        args: Vec::new(),
        env: vec![
            ("CNI_COMMAND".into(), "VERSION".into()),
            ("PATH".into(), "/usr/bin:/bin".into()),
        ],
        stdin: br#"{"cniVersion":"1.0.0"}"#.to_vec(),
    };
    let mut v = Vec::new();
    if let Some(f) = &helpers.floor_static {
        v.push(("floor: static do-nothing", plain(f.clone())));
    }
    v.push(("/bin/true (dynamic)", plain(PathBuf::from("/bin/true"))));
    v.push(("gwsteer VERSION", version(lab.gwsteer.clone())));
    if let Some((alt, _)) = &lab.alt {
        v.push(("gwsteer (alt build) VERSION", version(alt.clone())));
    }
    v.push(("sbr VERSION", version(lab.sbr.clone())));
    v
}

/// Peak RSS: RSS_RUNS ADD/DEL pairs per node and mode through the launcher.
fn rss_pass(lab: &Lab, available: &[Mode], helpers: &Helpers, res: &mut Results) -> Res<()> {
    let Some(launcher) = &helpers.launcher else {
        return Ok(());
    };
    eprintln!("peak RSS pass");
    let out = lab.scratch.dir.join("maxrss");
    let pre = vec![out.display().to_string()];
    let read_rss = || -> Res<i64> {
        fs::read_to_string(&out)
            .map_err(|e| format!("{}: {e}", out.display()))?
            .trim()
            .parse()
            .map_err(|e| format!("maxrss: {e}"))
    };
    for node in &lab.nodes {
        for &mode in available {
            enter(node.file_for(mode))?;
            let pod = lab.pod_for(node, mode, MEASURED);
            'runs: for _ in 0..RSS_RUNS {
                for verb in [Verb::Add, Verb::Del] {
                    let inv = lab
                        .invocation(node, mode, verb, MEASURED, &pod, "rss")
                        .wrapped(launcher, &pre);
                    let o = measure(&inv, &lab.scratch)?;
                    if !o.ok() {
                        res.notes.push(format!(
                            "peak RSS, {} {verb:?} on node {}: {}",
                            mode.label(),
                            node.level,
                            o.error_msg()
                        ));
                        break 'runs;
                    }
                    let kb = read_rss()?;
                    let e = res.rss.entry((node.level, mode, verb)).or_insert(0);
                    *e = (*e).max(kb);
                }
                if mode == Mode::Sbr {
                    reset_sbr_pod(&pod)?;
                }
            }
        }
    }
    enter(&lab.nodes[0].file)?;
    for (name, inv) in probe_invocations(lab, helpers) {
        let direct = measure(&inv, &lab.scratch)?.maxrss_kb;
        let via = measure(&inv.wrapped(launcher, &pre), &lab.scratch)
            .ok()
            .and_then(|_| read_rss().ok());
        res.probe_rss.insert(name, (via, direct));
    }
    Ok(())
}

/// gwsteer logs each ADD's and DEL's own duration ("… in N µs").
fn collect_logged(lab: &Lab, available: &[Mode], res: &mut Results) {
    for node in &lab.nodes {
        for &mode in available.iter().filter(|m| m.is_gwsteer()) {
            let Ok(text) = fs::read_to_string(lab.log_file(node, mode, "measured")) else {
                continue;
            };
            for line in text.lines() {
                let verb = if line.contains(" INFO  ADD ") && line.contains("steered") {
                    Verb::Add
                } else if line.contains(" INFO  DEL ") && line.contains("removed") {
                    Verb::Del
                } else {
                    continue;
                };
                if let Some(us) = line
                    .rsplit_once(" in ")
                    .and_then(|(_, t)| t.strip_suffix(" µs"))
                    .and_then(|t| t.trim().parse::<f64>().ok())
                {
                    res.logged_us
                        .entry((node.level, mode, verb))
                        .or_default()
                        .push(us);
                }
            }
        }
    }
}

/// N concurrent ADDs, then N concurrent DELs, on the node with no other
/// attachments: a burst of pod starts. (Not on the 1000-attachment node: a
/// Linux bridge takes at most 1024 ports, and the gateway network's pods
/// each have one.)
fn concurrent(lab: &mut Lab, available: &[Mode], n: usize, res: &mut Results) -> Res<()> {
    for &mode in available.iter().filter(|m| **m != Mode::SourceAlt) {
        eprintln!("{n} concurrent ADDs and DELs: {}", mode.label());
        match concurrent_one(lab, mode, n) {
            Ok(c) => {
                res.concurrent.insert(mode, c);
            }
            Err(e) => res
                .notes
                .push(format!("concurrent calls, {}: {e}", mode.label())),
        }
    }
    enter(&lab.nodes[0].file)?;
    Ok(())
}

fn concurrent_one(lab: &mut Lab, mode: Mode, n: usize) -> Res<ConcurrentResult> {
    let idx = 0;
    {
        let ids: Vec<usize> = (CONCURRENT_BASE..CONCURRENT_BASE + n).collect();
        let amid = CONCURRENT_BASE + n;
        for &i in ids.iter().chain([&amid]) {
            let pod = lab.pod_for(&lab.nodes[idx], mode, i);
            match mode {
                Mode::Sbr | Mode::PodSide => make_sbr_pod(&mut lab.nodes[idx], &pod)?,
                Mode::GwClient => make_gw_pod(&mut lab.nodes[idx], &pod)?,
                _ => {}
            }
        }
        let node = &lab.nodes[idx];
        enter(&node.file)?;
        let log = lab.log_file(node, mode, "concurrent");
        let _ = fs::remove_file(&log);
        let build = |verb| -> Vec<Invocation> {
            ids.iter()
                .map(|&i| {
                    let pod = lab.pod_for(node, mode, i);
                    lab.invocation(node, mode, verb, i, &pod, "concurrent")
                })
                .collect()
        };
        let (add_wall, adds) = measure_concurrent(&build(Verb::Add), &lab.scratch)?;
        let add_log = fs::read_to_string(&log).unwrap_or_default();
        let _ = fs::remove_file(&log);
        // The DEL burst, and one pod start 20 ms into it.
        let amid_pod = lab.pod_for(node, mode, amid);
        let amid_add = lab.invocation(node, mode, Verb::Add, amid, &amid_pod, "concurrent");
        let dels = build(Verb::Del);
        let (burst, add_amid_dels) = std::thread::scope(|scope| {
            let burst = scope.spawn(|| -> Res<(Duration, Vec<Outcome>)> {
                // setns(2) is per thread: this one enters the node too.
                enter(&node.file)?;
                measure_concurrent(&dels, &lab.scratch)
            });
            std::thread::sleep(Duration::from_millis(20));
            let add = measure(&amid_add, &lab.scratch);
            (burst.join(), add)
        });
        let (del_wall, dels) = burst.map_err(|_| "the DEL burst thread panicked".to_string())??;
        let add_amid_dels = add_amid_dels?;
        let del_log = fs::read_to_string(&log).unwrap_or_default();
        let undo = measure(
            &lab.invocation(node, mode, Verb::Del, amid, &amid_pod, "concurrent"),
            &lab.scratch,
        )?;
        if !undo.ok() {
            return Err(format!("DEL after the burst: {}", undo.error_msg()));
        }
        let failed = |v: &[Outcome]| -> Vec<String> {
            v.iter()
                .filter(|o| !o.ok())
                .map(Outcome::error_msg)
                .collect()
        };
        let (add_lock, del_lock) = if mode.is_gwsteer() {
            (max_lock_wait_us(&add_log), max_lock_wait_us(&del_log))
        } else {
            (None, None)
        };
        Ok(ConcurrentResult {
            n,
            add_wall,
            del_wall,
            add_failed: failed(&adds),
            del_failed: failed(&dels),
            add_lock_max_us: add_lock,
            del_lock_max_us: del_lock,
            add_amid_dels: Some(add_amid_dels),
        })
    }
}

/// Largest lock wait in a debug log: "state store lock taken in N µs", or
/// "waited N ms for the state store lock" (over 1 s).
fn max_lock_wait_us(log: &str) -> Option<u64> {
    let mut max = None;
    for line in log.lines() {
        let us = if let Some((_, t)) = line.split_once("state store lock taken in ") {
            t.trim()
                .strip_suffix("µs")
                .and_then(|t| t.trim().parse::<u64>().ok())
        } else if let Some((_, t)) = line.split_once("waited ") {
            t.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .map(|ms| ms * 1000)
        } else {
            None
        };
        if let Some(us) = us {
            max = Some(max.map_or(us, |m: u64| m.max(us)));
        }
    }
    max
}

/// One call under a tool (`strace …`, `perf stat …`) that writes to `out`:
/// what the tool wrote, or why the call failed.
fn wrapped_output(
    inv: &Invocation,
    tool: &Path,
    pre: &[&str],
    out: &Path,
    lab: &Lab,
) -> Res<Result<String, String>> {
    let pre: Vec<String> = pre.iter().map(|s| s.to_string()).collect();
    let r = measure(&inv.wrapped(tool, &pre), &lab.scratch)?;
    if !r.ok() {
        return Ok(Err(r.describe()));
    }
    Ok(Ok(fs::read_to_string(out).unwrap_or_default()))
}

/// strace and perf on the busiest node: syscall counts, netlink round trips
/// and CPU counters of one ADD and one DEL per mode.
fn profile(lab: &Lab, available: &[Mode], res: &mut Results) -> Res<()> {
    let node = &lab.nodes[lab.nodes.len() - 1];
    enter(&node.file)?;
    let strace = which("strace");
    let perf = which("perf");
    'modes: for &mode in available.iter().filter(|m| **m != Mode::SourceAlt) {
        let pod = lab.pod_for(node, mode, MEASURED);
        let inv = |verb| lab.invocation(node, mode, verb, MEASURED, &pod, "profile");
        let reset = || -> Res<()> {
            if mode == Mode::Sbr {
                reset_sbr_pod(&pod)?;
            }
            Ok(())
        };
        if let Some(strace) = &strace {
            eprintln!("strace: {}", mode.label());
            let out = lab.scratch.dir.join("strace.txt");
            let o = out.display().to_string();
            let mut text = String::new();
            let summary_pre = ["-c", "-f", "-o", &o, "--"];
            let trace_pre = [
                "-f",
                "-yy",
                "-e",
                "trace=sendto,sendmsg,recvfrom,recvmsg",
                "-o",
                &o,
                "--",
            ];
            for verb in [Verb::Add, Verb::Del] {
                let summary = match wrapped_output(&inv(verb), strace, &summary_pre, &out, lab)? {
                    Ok(s) => s,
                    Err(why) => {
                        res.notes
                            .push(format!("strace {} {verb:?}: {why}", mode.label()));
                        continue 'modes;
                    }
                };
                let _ = writeln!(text, "{}", strace_summary(&summary, verb));
            }
            reset()?;
            for verb in [Verb::Add, Verb::Del] {
                let trace = match wrapped_output(&inv(verb), strace, &trace_pre, &out, lab)? {
                    Ok(s) => s,
                    Err(why) => {
                        res.notes
                            .push(format!("strace {} {verb:?}: {why}", mode.label()));
                        continue 'modes;
                    }
                };
                let sends = trace
                    .lines()
                    .filter(|l| {
                        l.contains("NETLINK") && (l.contains("sendto(") || l.contains("sendmsg("))
                    })
                    .count();
                let recvs = trace
                    .lines()
                    .filter(|l| {
                        l.contains("NETLINK")
                            && (l.contains("recvfrom(") || l.contains("recvmsg("))
                            && !l.contains("EAGAIN")
                    })
                    .count();
                let _ = writeln!(
                    text,
                    "{}: {sends} netlink requests sent, {recvs} netlink reads that returned data",
                    verb.env()
                );
            }
            reset()?;
            res.profile
                .push((format!("{} — strace", mode.label()), text));
        }
        if let Some(perf) = &perf {
            eprintln!("perf stat: {}", mode.label());
            let out = lab.scratch.dir.join("perf.txt");
            let o = out.display().to_string();
            let mut counters: BTreeMap<(Verb, String), Vec<String>> = BTreeMap::new();
            for _ in 0..PERF_RUNS {
                for verb in [Verb::Add, Verb::Del] {
                    let pre = [
                        "stat",
                        "-x",
                        ",",
                        "-o",
                        &o,
                        "-e",
                        "task-clock,context-switches,cpu-migrations,page-faults,cycles,instructions",
                        "--",
                    ];
                    let stat = match wrapped_output(&inv(verb), perf, &pre, &out, lab)? {
                        Ok(s) => s,
                        Err(why) => {
                            res.notes
                                .push(format!("perf {} {verb:?}: {why}", mode.label()));
                            continue 'modes;
                        }
                    };
                    for line in stat.lines() {
                        let f: Vec<&str> = line.split(',').collect();
                        if f.len() > 2 && !line.starts_with('#') {
                            counters
                                .entry((verb, f[2].to_string()))
                                .or_default()
                                .push(f[0].to_string());
                        }
                    }
                }
                reset()?;
            }
            let mut text = String::new();
            for verb in [Verb::Add, Verb::Del] {
                let mut parts = Vec::new();
                for ((v, event), values) in &counters {
                    if *v != verb {
                        continue;
                    }
                    let nums: Vec<f64> = values.iter().filter_map(|s| s.parse().ok()).collect();
                    if nums.is_empty() {
                        parts.push(format!("{event} {}", values.first().map_or("?", |s| s)));
                    } else {
                        let unit = if event == "task-clock" { " ms" } else { "" };
                        parts.push(format!("{event} {}{unit}", ms(pct(&nums, 50.0))));
                    }
                }
                let _ = writeln!(
                    text,
                    "{} (median of {PERF_RUNS}): {}",
                    verb.env(),
                    parts.join(", ")
                );
            }
            res.profile
                .push((format!("{} — perf stat", mode.label()), text));
        }
    }
    if strace.is_none() {
        res.notes
            .push("strace not installed: no syscall profile".into());
    }
    if perf.is_none() {
        res.notes.push("perf not installed: no CPU counters".into());
    }
    enter(&lab.nodes[0].file)?;
    Ok(())
}

/// Top syscalls by count from `strace -c` output, and the totals.
fn strace_summary(text: &str, verb: Verb) -> String {
    let mut rows = Vec::new();
    let mut total = String::new();
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 5 || t[0].starts_with('%') || t[0].starts_with('-') {
            continue;
        }
        let name = t[t.len() - 1];
        let calls: u64 = t[3].parse().unwrap_or(0);
        if name == "total" {
            total = format!("{calls} syscalls");
        } else {
            rows.push((calls, name.to_string()));
        }
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let top: Vec<String> = rows
        .iter()
        .take(12)
        .map(|(c, n)| format!("{n} {c}"))
        .collect();
    format!("{}: {total}; most frequent: {}", verb.env(), top.join(", "))
}

fn which(prog: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.exists())
}

// ---------------------------------------------------------------- machine

fn utc_now() -> String {
    run("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("unix time {secs}")
        })
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> Vec<(String, String)> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let nproc = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| format!("{} MiB", kb / 1024))
        .unwrap_or_default();
    let os = fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_default();
    let rustc = run("rustc", &["-V"])
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let git = run(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ],
    )
    .map(|s| s.trim().to_string())
    .unwrap_or_else(|_| "unknown".into());
    let sbr = run(
        "dpkg-query",
        &["-W", "-f", "${Version}", "containernetworking-plugins"],
    )
    .map(|s| format!("containernetworking-plugins {}", s.trim()))
    .unwrap_or_else(|_| SBR_BIN.into());
    vec![
        ("CPU".into(), format!("{model}, {nproc} CPUs (nproc)")),
        ("memory".into(), mem),
        ("kernel".into(), kernel),
        ("OS".into(), os),
        ("gwsteer".into(), format!("git {git}, release build")),
        ("sbr".into(), sbr),
        ("toolchain".into(), rustc),
    ]
}

// ---------------------------------------------------------------- report

fn report(
    lab: &Lab,
    available: &[Mode],
    opts: &Options,
    helpers: &Helpers,
    res: &Results,
) -> String {
    let mut r = String::new();
    let p50 = |level: usize, mode: Mode, verb: Verb| -> f64 {
        res.calls
            .get(&(level, mode, verb))
            .map_or(f64::NAN, |s| pct(&s.wall_ms, 50.0))
    };
    let _ = writeln!(r, "# gwsteer CNI benchmark\n");
    let _ = writeln!(
        r,
        "Generated by `benches/run.sh` (`cargo bench --bench cni`), {} → {}.\n",
        res.started, res.finished
    );
    let _ = writeln!(
        r,
        "What these numbers mean and where the time goes: `benches/BREAKDOWN.md` \
         (written from one run; a rerun changes the numbers here, not that text).\n"
    );
    let _ = writeln!(r, "## Machine\n");
    for (k, v) in machine() {
        let _ = writeln!(r, "- {k}: {v}");
    }
    let _ = writeln!(
        r,
        "- load average (1/5/15 min): {} at start, {} at end (a shared machine: absolute times move, compare ratios)",
        res.load_start, res.load_end
    );
    let _ = writeln!(
        r,
        "- {} iterations; in each, every (node, mode) ADD+DEL pair, the rules helper per node and the floor probes run once, in an order shuffled anew each iteration (fixed seed): no row systematically follows another that warmed its caches",
        opts.iterations
    );

    let _ = writeln!(r, "\n## ADD and DEL, whole process (spawn → exit), ms\n");
    let _ = writeln!(
        r,
        "`CPU` is the child's user+sys time (rusage). `RSS` is peak resident memory per invocation \
         (max over {RSS_RUNS} ADDs / DELs, `ru_maxrss`). `÷ sbr` is this row's p50 over sbr's p50 on the same node.\n"
    );
    let _ = writeln!(
        r,
        "| mode | attachments on node | ADD p50 | ADD p99 | ADD CPU p50 | DEL p50 | DEL p99 | DEL CPU p50 | RSS ADD / DEL (KiB) | ADD ÷ sbr | DEL ÷ sbr |"
    );
    let _ = writeln!(r, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for node in &lab.nodes {
        let level = node.level;
        for mode in MODES {
            let avail = res.availability.get(&mode);
            if avail.is_none() {
                continue; // the alt build, not asked for
            }
            if !available.contains(&mode) {
                let why = match avail {
                    Some(Availability::NotBuilt(_)) => "n/a (not built)".to_string(),
                    Some(Availability::Failed(m)) => {
                        format!("n/a (failed: {})", m.replace('|', "/"))
                    }
                    _ => "n/a".into(),
                };
                let _ = writeln!(r, "| {} | {level} | {why} | | | | | | | | |", mode.label());
                continue;
            }
            let get = |verb| {
                res.calls
                    .get(&(level, mode, verb))
                    .cloned()
                    .unwrap_or_default()
            };
            let (a, d) = (get(Verb::Add), get(Verb::Del));
            let rss = |verb| {
                res.rss
                    .get(&(level, mode, verb))
                    .map_or("–".to_string(), |k| k.to_string())
            };
            let (ra, rd) = if mode == Mode::Sbr {
                ("1.00".to_string(), "1.00".to_string())
            } else {
                (
                    ratio(pct(&a.wall_ms, 50.0), p50(level, Mode::Sbr, Verb::Add)),
                    ratio(pct(&d.wall_ms, 50.0), p50(level, Mode::Sbr, Verb::Del)),
                )
            };
            let _ = writeln!(
                r,
                "| {} | {level} | {} | {} | {} | {} | {} | {} | {} / {} | {ra} | {rd} |",
                mode.label(),
                ms(pct(&a.wall_ms, 50.0)),
                ms(pct(&a.wall_ms, 99.0)),
                ms(pct(&a.cpu_ms, 50.0)),
                ms(pct(&d.wall_ms, 50.0)),
                ms(pct(&d.wall_ms, 99.0)),
                ms(pct(&d.cpu_ms, 50.0)),
                rss(Verb::Add),
                rss(Verb::Del),
            );
        }
    }
    for mode in MODES {
        if let Some(Availability::NotBuilt(m)) = res.availability.get(&mode) {
            let _ = writeln!(
                r,
                "\n{} n/a: this gwsteer refused it: \"{m}\"",
                mode.label()
            );
        }
    }
    if let Some((path, label)) = &lab.alt {
        let _ = writeln!(
            r,
            "\n*{}*: the same `source` attachment, network and state, made by another gwsteer binary \
             ({label}: `{}`), interleaved with the rest.",
            Mode::SourceAlt.label(),
            path.display()
        );
    }
    let _ = writeln!(
        r,
        "\nRules in each node namespace after pre-population (IPv4 + IPv6, incl. the 5 default ones): {}.",
        res.node_rules
            .iter()
            .map(|(l, n)| format!("{l} attachments → {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let _ = writeln!(
        r,
        "\n### The floor: exec of a process that does (almost) nothing, same method\n"
    );
    let _ = writeln!(r, "| program | p50 | p99 | CPU p50 | peak RSS (KiB) |");
    let _ = writeln!(r, "|---|---:|---:|---:|---:|");
    for (name, s) in &res.probes {
        let rss = res
            .probe_rss
            .get(name)
            .and_then(|(via, _)| *via)
            .map_or("–".into(), |k| k.to_string());
        let _ = writeln!(
            r,
            "| {name} | {} | {} | {} | {rss} |",
            ms(pct(&s.wall_ms, 50.0)),
            ms(pct(&s.wall_ms, 99.0)),
            ms(pct(&s.cpu_ms, 50.0))
        );
    }
    if let Some((_, direct)) = res
        .probe_rss
        .get("floor: static do-nothing")
        .or_else(|| res.probe_rss.get("/bin/true (dynamic)"))
    {
        let _ = writeln!(
            r,
            "\n`ru_maxrss` of the same do-nothing child reaped directly by the benchmark is {direct} KiB: \
             Linux carries the parent's RSS high-water mark into the child at execve. Hence RSS is taken \
             through a static launcher (fork, exec, wait4) of a few hundred KiB."
        );
    }

    // ---- the kernel's share of `source`
    if !res.rules_share.is_empty() {
        let helper50 = |level: usize, verb: Verb| {
            res.rules_share
                .get(&(level, verb))
                .map_or(f64::NAN, |s| pct(&s.wall_ms, 50.0))
        };
        let _ = writeln!(
            r,
            "\n### The kernel's share of `source`: the same rules, nothing else\n"
        );
        let _ = writeln!(
            r,
            "*rules helper*: a static C program (in benches/cni.rs) that sends exactly the \
             policy-rule requests of a `source` ADD (3 IPv4, 2 IPv6 `RTM_NEWRULE`, create + excl, \
             protocol 211, priorities {} and {}) or DEL (the 5 `RTM_DELRULE`, in reverse), in \
             gwsteer's order, for an address no attachment has, and exits; interleaved with the rest. It is the floor plus what the \
             kernel's rule list costs at that level. *gwsteer − helper*: what gwsteer costs beyond \
             it (config, state store, table read-back, result).\n",
            SOURCE_PRIORITY - 1,
            SOURCE_PRIORITY
        );
        let _ = writeln!(
            r,
            "| attachments on node | helper ADD p50 | helper DEL p50 | gwsteer source ADD p50 | DEL p50 | gwsteer − helper, ADD | DEL |"
        );
        let _ = writeln!(r, "|---:|---:|---:|---:|---:|---:|---:|");
        for node in &lab.nodes {
            let l = node.level;
            let (ha, hd) = (helper50(l, Verb::Add), helper50(l, Verb::Del));
            let (ga, gd) = (
                p50(l, Mode::Source, Verb::Add),
                p50(l, Mode::Source, Verb::Del),
            );
            let _ = writeln!(
                r,
                "| {l} | {} | {} | {} | {} | {} | {} |",
                ms(ha),
                ms(hd),
                ms(ga),
                ms(gd),
                ms(ga - ha),
                ms(gd - hd)
            );
        }
    }

    // ---- concurrent
    let _ = writeln!(
        r,
        "\n## Concurrent calls: a burst of pod starts on the node with {} other attachments\n",
        lab.nodes.first().map_or(0, |n| n.level)
    );
    let _ = writeln!(
        r,
        "All spawned at once (back to back from one thread), wall time from the first spawn to the last exit. \
         Lock wait: the largest \"state store lock taken in N µs\" in gwsteer's debug log. \
         *ADD amid the DELs*: one more pod's ADD, started 20 ms into the DEL burst (a pod start while \
         others go), spawn → exit.\n"
    );
    let _ = writeln!(
        r,
        "| mode | N | ADD wall (ms) | ADD failures | max lock wait, ADD | DEL wall (ms) | DEL failures | max lock wait, DEL | ADD amid the DELs (ms) | ADD ÷ sbr | DEL ÷ sbr |"
    );
    let _ = writeln!(r, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let sbr_c = res.concurrent.get(&Mode::Sbr);
    for mode in run_modes(res).filter(|m| *m != Mode::SourceAlt) {
        let Some(c) = res.concurrent.get(&mode) else {
            let _ = writeln!(r, "| {} | | n/a | | | | | | | | |", mode.label());
            continue;
        };
        let lockw = |v: Option<u64>| {
            v.map_or("–".to_string(), |us| {
                format!("{:.1} ms", us as f64 / 1000.0)
            })
        };
        let (ra, rd) = match sbr_c {
            Some(s) if mode != Mode::Sbr => (
                ratio(c.add_wall.as_secs_f64(), s.add_wall.as_secs_f64()),
                ratio(c.del_wall.as_secs_f64(), s.del_wall.as_secs_f64()),
            ),
            _ => ("–".into(), "–".into()),
        };
        let amid = match &c.add_amid_dels {
            Some(o) if o.ok() => ms(o.wall.as_secs_f64() * 1e3),
            Some(_) => "failed".to_string(),
            None => "–".to_string(),
        };
        let _ = writeln!(
            r,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {amid} | {ra} | {rd} |",
            mode.label(),
            c.n,
            ms(c.add_wall.as_secs_f64() * 1e3),
            c.add_failed.len(),
            lockw(c.add_lock_max_us),
            ms(c.del_wall.as_secs_f64() * 1e3),
            c.del_failed.len(),
            lockw(c.del_lock_max_us),
        );
        let amid_failed = c
            .add_amid_dels
            .iter()
            .filter(|o| !o.ok())
            .map(Outcome::error_msg);
        for f in c
            .add_failed
            .iter()
            .chain(c.del_failed.iter())
            .cloned()
            .chain(amid_failed)
            .take(3)
        {
            let _ = writeln!(r, "\n  failure ({}): {f}", mode.label());
        }
    }

    // ---- verdicts
    let _ = writeln!(r, "\n## Targets\n");
    for line in verdicts(lab, available, res) {
        let _ = writeln!(r, "- {line}");
    }

    // ---- breakdown
    let _ = writeln!(r, "\n## Where the time goes\n");
    let probe50 = |name: &str| {
        res.probes
            .get(name)
            .map_or(f64::NAN, |s| pct(&s.wall_ms, 50.0))
    };
    let floor = if helpers.floor_static.is_some() {
        probe50("floor: static do-nothing")
    } else {
        probe50("/bin/true (dynamic)")
    };
    let gv = probe50("gwsteer VERSION");
    let av = probe50("gwsteer (alt build) VERSION");
    let sv = probe50("sbr VERSION");
    let _ = writeln!(
        r,
        "p50s, ms. *exec floor*: spawn + exec + exit of a static do-nothing binary. *start-up*: the plugin's \
         VERSION call (loader, runtime init, read stdin, print) minus the floor. *verb work*: the time gwsteer \
         itself logs for the ADD/DEL (ADD: after config parsing to the result; DEL: after taking the lock and \
         reading the record). *rest*: what remains of the whole-process p50 (config parsing, logging set-up, \
         lock, exit); for sbr everything after start-up is one figure.\n"
    );
    let _ = writeln!(
        r,
        "| call | attachments | whole p50 | exec floor | start-up | verb work | rest |"
    );
    let _ = writeln!(r, "|---|---:|---:|---:|---:|---:|---:|");
    for node in &lab.nodes {
        for mode in available {
            for verb in [Verb::Add, Verb::Del] {
                let total = p50(node.level, *mode, verb);
                let start = match mode {
                    Mode::Sbr => sv,
                    Mode::SourceAlt => av,
                    _ => gv,
                } - floor;
                let work = res
                    .logged_us
                    .get(&(node.level, *mode, verb))
                    .map_or(f64::NAN, |v| pct(v, 50.0) / 1000.0);
                let rest = if work.is_nan() {
                    total - floor - start
                } else {
                    total - floor - start - work
                };
                let _ = writeln!(
                    r,
                    "| {} {} | {} | {} | {} | {} | {} | {} |",
                    mode.label(),
                    verb.env(),
                    node.level,
                    ms(total),
                    ms(floor),
                    ms(start),
                    ms(work),
                    ms(rest)
                );
            }
        }
    }
    let _ = writeln!(
        r,
        "\n### Syscalls, netlink round trips, CPU counters (node with {} attachments)\n",
        lab.nodes.last().map_or(0, |n| n.level)
    );
    for (title, text) in &res.profile {
        let _ = writeln!(r, "**{title}**\n");
        for line in text.lines() {
            let _ = writeln!(r, "- {line}");
        }
        let _ = writeln!(r);
    }

    // ---- method
    let _ = writeln!(r, "## Method\n");
    for line in [
        "Each plugin binary is spawned directly with `std::process::Command` (no `ip netns exec`): the benchmark thread `setns`es into the node namespace and its children inherit it. Environment: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH`, `CNI_ARGS`, `PATH`; the config (cniVersion 1.0.0, with `prevResult`) on stdin; stdout read through a pipe. Time: spawn → reaped by `wait4`.",
        "Three levels (0, 100, 1000 attachments of each mode already on the node), each a node namespace (and a second one, `-w`, for the rows named below) with an uplink `eth-b` to a router namespace holding the gateways; all levels and modes are interleaved in every iteration.",
        "gwsteer `source`: policy `oam`, table 100, gateways 192.168.2.1 and fd00:2::1 on `eth-b`, exclusions 10.244.0.0/16, 10.96.0.0/12, fd00:244::/48; a dual-stack pod = 5 rules. The prevResult is what bridge + host-local return (cni0, host veth, sandbox `eth0`, IPv4 + IPv6 with gateways). Pre-populated attachments are real gwsteer ADDs with distinct container ids and addresses (state on tmpfs, `/dev/shm`, as `/run` is on a node); at 1000 attachments the node holds 5000 pod rules.",
        "gwsteer `connmark`: mark 0x14, `ingressInterfaces: [eth-b]`, `firewallBackend: nftables`, table 200; per pod one element in an nftables set. gwsteer `mark`: mark 0x16, `egressTo: [203.0.113.0/24, 2001:db8::/32]`, table 220, priority 2200, like `connmark` on the second node namespace of each level (`-w`, see below). gwsteer `connmark`, whole network: the same with `scope: subnet` (policy `oamcn`, mark 0x15, table 210, priority 2100): one range per pod subnet in the policy's set, no per-pod element. The whole-network rows, `mark` and `connmark` run on a second node namespace per level (`-w`, same uplink and router), without the per-pod `source` row's 5000 rules: each of them re-asserts a rule on every ADD (the `fwmark` rule, the subnet's rules), and that walks the node's rule list. gateway-network client: `gatewayNetwork` `{bridge: gwbr0, role: client, router: 172.20.0.1, routes: [0.0.0.0/0], keep: [10.244.0.0/16, 10.96.0.0/12]}`, `CNI_IFNAME=net1`; every attachment is a pod namespace of its own with `eth0` (primary, default route) and `net1` on `gwbr0` (made by the benchmark, as bridge + Multus would), and the router's namespace on `gwbr0`. Both are measured only when this gwsteer build accepts them (else `n/a (not built)`).",
        "gwsteer VRF leak (`--vrf`, in the VRF tier's qemu guest: `benches/run-vrf.sh`): a `vrf` section with VRF `vrf-bp` on table 10 and veth legs `bp-host`/`bp-vrf` (169.254.1.1/30 and .2, fd00:a9fe:1::1/126 and ::2), no uplinks, no steering policy, `leak: pod` (per pod a /32 and a /128 in table 10 via the host leg); per CIDR: VRF `vrf-bc`, table 11, legs `bc-host`/`bc-vrf`, `leak: cidr` with `podCidrs` 10.244.0.0/16 and fd00:244::/48 (a node group every pod holds, made by the first, removed with the last). The VRF and its legs stay until `gwsteer cleanup`, so every ADD re-asserts them (5 links, 2 unreachable defaults, 4 addresses, `accept_local`) and adds its leaks. Both run on the `-w` node namespace: a route's gateway check is a FIB lookup that walks the node's rules, and the `source` row's rules are on the other one. In the guest, gwsteer and sbr run from copies on tmpfs (`--local-copies`): the host's files are on 9p there, and an exec from 9p measured 9p.",
        "The measured attachment is ADDed and DELeted each iteration (same container id and addresses: ADD after DEL must work). At level 0 it is the only attachment, so its ADD also makes the policy's table routes and its DEL removes them (first/last holder); at 100 and 1000 it only adds and removes its own rules.",
        "sbr works only inside the pod's namespace (rules and a table there, nothing on the node), so \"attachments on the node\" cannot change its work; its rows at each level measure the same pod setup, on that level's node, interleaved like the rest. sbr cannot ADD again after DEL on the same interface (its DEL leaves the routes it moved into table 100+, and ADD then fails with \"file exists\"); after every DEL, outside the timed region, the pod is reset (tables 100–103 flushed, addresses re-created, link down/up, default routes) and the benchmark proves once, by comparing `ip -j` snapshots, that the reset restores the pod exactly.",
        "Concurrent: N pods ADDed at once then DELeted at once on the node without other attachments (a Linux bridge takes at most 1024 ports, so the gateway network could not add 100 pods next to 1000; at 1000 attachments each source ADD holds the lock longer by what the kernel's rule list costs, see the breakdown); sbr and the gateway-network client get N pod namespaces. One more pod's ADD starts 20 ms into the DEL burst, from another thread, and is timed on its own. Lock waits come from gwsteer's `logLevel: debug` line \"state store lock taken in N µs\" (and the warn line \"waited N ms\").",
        "Peak RSS: `ru_maxrss` through a static launcher (see the floor table). Profile: `strace -c -f` of one ADD and one DEL; netlink round trips counted from `strace -f -yy` (sendto/sendmsg on NETLINK sockets); `perf stat` software counters (this VM exposes no hardware counters).",
    ] {
        let _ = writeln!(r, "- {line}");
    }
    for n in &res.notes {
        let _ = writeln!(r, "- note: {n}");
    }
    r
}

fn verdicts(lab: &Lab, available: &[Mode], res: &Results) -> Vec<String> {
    let mut out = Vec::new();
    let p50 = |level: usize, mode: Mode, verb: Verb| -> f64 {
        res.calls
            .get(&(level, mode, verb))
            .map_or(f64::NAN, |s| pct(&s.wall_ms, 50.0))
    };
    let cpu50 = |level: usize, mode: Mode, verb: Verb| -> f64 {
        res.calls
            .get(&(level, mode, verb))
            .map_or(f64::NAN, |s| pct(&s.cpu_ms, 50.0))
    };
    let mark = |ok: bool| if ok { "**PASS**" } else { "**FAIL**" };
    // Every mode's ADD and DEL against sbr's on the same node, per level.
    for mode in run_modes(res).filter(|m| m.is_target() && available.contains(m)) {
        let mut ok = true;
        let detail: Vec<String> = lab
            .nodes
            .iter()
            .map(|n| {
                let q = [Verb::Add, Verb::Del]
                    .map(|v| p50(n.level, mode, v) / p50(n.level, Mode::Sbr, v));
                ok &= q.iter().all(|q| *q <= 0.5);
                format!("{}: {:.2} / {:.2}", n.level, q[0], q[1])
            })
            .collect();
        out.push(format!(
            "{} ADD and DEL p50 ≤ 0.5 × sbr's at every level, {} (ADD / DEL ÷ sbr at {})",
            mark(ok),
            mode.label(),
            detail.join("; ")
        ));
    }
    let source_measured = res.availability.contains_key(&Mode::Source);
    for verb in [Verb::Add, Verb::Del]
        .into_iter()
        .filter(|_| source_measured)
    {
        let mut worst: Option<(usize, f64)> = None;
        for node in &lab.nodes {
            let q = p50(node.level, Mode::Source, verb) / p50(node.level, Mode::Sbr, verb);
            if worst.is_none_or(|(_, w)| q > w || q.is_nan()) {
                worst = Some((node.level, q));
            }
        }
        let detail: Vec<String> = lab
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "{}: {} / {} ms = {}",
                    n.level,
                    ms(p50(n.level, Mode::Source, verb)),
                    ms(p50(n.level, Mode::Sbr, verb)),
                    ratio(
                        p50(n.level, Mode::Source, verb),
                        p50(n.level, Mode::Sbr, verb)
                    )
                )
            })
            .collect();
        let ok = worst.is_some_and(|(_, q)| q <= 0.5);
        let cpu: Vec<String> = lab
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "{}: {}",
                    n.level,
                    ratio(
                        cpu50(n.level, Mode::Source, verb),
                        cpu50(n.level, Mode::Sbr, verb)
                    )
                )
            })
            .collect();
        out.push(format!(
            "{} {} p50 of gwsteer source ≤ 0.5 × sbr's, at every level ({}). The same ratio of CPU time (user+sys) p50: {}",
            mark(ok),
            verb.env(),
            detail.join("; "),
            cpu.join("; ")
        ));
    }
    let (lo, hi) = (
        lab.nodes.first().map_or(0, |n| n.level),
        lab.nodes.last().map_or(0, |n| n.level),
    );
    for mode in run_modes(res).filter(|m| m.is_target()) {
        if !available.contains(&mode) {
            out.push(format!(
                "n/a: ADD p50 at {hi} ≤ 1.2 × at {lo} attachments, {} (not measured)",
                mode.label()
            ));
            continue;
        }
        let (a, b) = (p50(hi, mode, Verb::Add), p50(lo, mode, Verb::Add));
        out.push(format!(
            "{} ADD p50 at {hi} attachments ≤ 1.2 × at {lo}, {}: {} / {} ms = {}",
            mark(a <= 1.2 * b),
            mode.label(),
            ms(a),
            ms(b),
            ratio(a, b)
        ));
    }
    for mode in [Mode::Subnet, Mode::ConnmarkSubnet] {
        if !available.contains(&mode) {
            continue;
        }
        let detail: Vec<String> = [Verb::Add, Verb::Del]
            .into_iter()
            .map(|v| {
                let (a, b) = (p50(hi, mode, v), p50(lo, mode, v));
                format!("{} {} / {} ms = {}", v.env(), ms(a), ms(b), ratio(a, b))
            })
            .collect();
        let ok = [Verb::Add, Verb::Del]
            .into_iter()
            .all(|v| p50(hi, mode, v) <= 1.1 * p50(lo, mode, v));
        out.push(format!(
            "{} whole-network policy: ADD and DEL p50 at {hi} attachments ≤ 1.1 × at {lo}, {}: {}",
            mark(ok),
            mode.label(),
            detail.join("; ")
        ));
    }
    if !res.rules_share.is_empty() && available.contains(&Mode::Source) {
        let helper = |level: usize| {
            res.rules_share
                .get(&(level, Verb::Add))
                .map_or(f64::NAN, |s| pct(&s.wall_ms, 50.0))
        };
        let (g_lo, g_hi) = (
            p50(lo, Mode::Source, Verb::Add),
            p50(hi, Mode::Source, Verb::Add),
        );
        let (h_lo, h_hi) = (helper(lo), helper(hi));
        out.push(format!(
            "(the kernel's share) the rules helper alone, ADD p50: {} ms at {lo}, {} ms at {hi} \
             attachments (+{} ms); at {hi} that is {} × gwsteer source's whole ADD at {lo}, against \
             the 1.2 the target allows. gwsteer source minus the helper: {} ms at {lo}, {} ms at {hi} = {}",
            ms(h_lo),
            ms(h_hi),
            ms(h_hi - h_lo),
            ratio(h_hi, g_lo),
            ms(g_lo - h_lo),
            ms(g_hi - h_hi),
            ratio(g_hi - h_hi, g_lo - h_lo)
        ));
    }
    if lab.nodes.len() > 2 {
        // Level 0 is the first holder (it also makes the node-level objects),
        // so scaling is seen more plainly from the middle level up.
        let mid = lab.nodes[1].level;
        let detail: Vec<String> = MODES
            .into_iter()
            .filter(|m| available.contains(m))
            .map(|m| {
                format!(
                    "{} {}",
                    m.label(),
                    ratio(p50(hi, m, Verb::Add), p50(mid, m, Verb::Add))
                )
            })
            .collect();
        out.push(format!(
            "(for reference) ADD p50 at {hi} ÷ at {mid} attachments: {}",
            detail.join(", ")
        ));
    }
    if available.contains(&Mode::SourceAlt) {
        let detail: Vec<String> = lab
            .nodes
            .iter()
            .flat_map(|n| {
                [Verb::Add, Verb::Del].map(|v| {
                    format!(
                        "{} at {}: {}",
                        v.env(),
                        n.level,
                        ratio(p50(n.level, Mode::SourceAlt, v), p50(n.level, Mode::Sbr, v))
                    )
                })
            })
            .collect();
        out.push(format!(
            "(for comparison, not a target) {} ÷ sbr, p50: {}; ADD at {hi} ÷ at {lo}: {}",
            Mode::SourceAlt.label(),
            detail.join(", "),
            ratio(
                p50(hi, Mode::SourceAlt, Verb::Add),
                p50(lo, Mode::SourceAlt, Verb::Add)
            )
        ));
    }
    {
        let (a, b) = (p50(hi, Mode::Sbr, Verb::Add), p50(lo, Mode::Sbr, Verb::Add));
        out.push(format!(
            "(for reference) sbr ADD p50 at {hi} vs {lo}: {} / {} ms = {}",
            ms(a),
            ms(b),
            ratio(a, b)
        ));
    }
    for mode in run_modes(res).filter(|m| m.is_target()) {
        let Some(c) = res.concurrent.get(&mode) else {
            out.push(format!(
                "n/a: concurrent ADDs, {} (not measured)",
                mode.label()
            ));
            continue;
        };
        let lock_ok = c.add_lock_max_us.is_some_and(|us| us <= 1_000_000);
        let ok = c.add_failed.is_empty() && lock_ok;
        out.push(format!(
            "{} {} concurrent ADDs, {}: {} failed, longest lock wait {}",
            mark(ok),
            c.n,
            mode.label(),
            c.add_failed.len(),
            c.add_lock_max_us
                .map_or("unknown (no debug log lines)".into(), |us| format!(
                    "{:.1} ms",
                    us as f64 / 1000.0
                ))
        ));
    }
    let amid: Vec<String> = run_modes(res)
        .filter(|m| m.is_target())
        .filter_map(|m| {
            let o = res.concurrent.get(&m)?.add_amid_dels.as_ref()?;
            Some(if o.ok() {
                format!("{} {} ms", m.label(), ms(o.wall.as_secs_f64() * 1e3))
            } else {
                format!("{} failed: {}", m.label(), o.error_msg())
            })
        })
        .collect();
    if !amid.is_empty() {
        out.push(format!(
            "(for reference) one pod's ADD started 20 ms into the burst of concurrent DELs: {}",
            amid.join(", ")
        ));
    }
    for mode in run_modes(res).filter(|m| m.is_target()) {
        let peaks: Vec<i64> = res
            .rss
            .iter()
            .filter(|((_, m, _), _)| *m == mode)
            .map(|(_, k)| *k)
            .collect();
        match peaks.iter().max() {
            Some(max) => out.push(format!(
                "{} peak RSS per invocation ≤ 5 MiB ({RSS_TARGET_KB} KiB), {}: max {max} KiB",
                mark(*max <= RSS_TARGET_KB),
                mode.label()
            )),
            None => out.push(format!("n/a: peak RSS, {} (not measured)", mode.label())),
        }
    }
    out
}
