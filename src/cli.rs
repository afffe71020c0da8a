//! The operator CLI (no `CNI_COMMAND`): version, show, explain, reconcile,
//! cleanup, install.
//! Exit codes: 0 ok, 1 found problems, 2 usage error.

use std::path::PathBuf;

use crate::config::DEFAULT_STATE_DIR;

const USAGE: &str = "usage: gwsteer <command> [options]

commands:
  version                       version and supported CNI versions
  show [--json]                 attachments and their objects, present or missing
  reconcile [--once] [--interval DUR] [--dry-run]
                                re-create missing recorded objects, repair drifted
                                ones, remove imposters from owned tables and rules
                                pointing at them; every DUR (default 60s; 500ms,
                                30s, 5m, 1h), or once with --once
  cleanup [--dry-run]           remove everything gwsteer made on this node, state included
  explain <ip> [--from IP] [--iif DEV] [--mark M] [--json]
                                the path a packet takes: matching rule, table,
                                route, nexthop, device (gwsteer explain --help)
  install [--bin FILE] [--conflist FILE] [--patch auto|FILE] [--plugin FILE]
          [--uninstall]         put gwsteer on a node: the binary into the CNI
                                bin dir, chained after the primary CNI
                                (gwsteer install --help)

options:
  --state-dir DIR               state store root (default /run/cni/gwsteer)

exit codes: 0 ok (reconcile --once: nothing to fix), 1 problems found (reconcile
--once: something was fixed, or would be with --dry-run, or could not be),
2 usage error

With CNI_COMMAND set, gwsteer runs as a CNI plugin instead.";

struct Opts {
    state_dir: PathBuf,
    json: bool,
    dry_run: bool,
    once: bool,
    interval: Option<std::time::Duration>,
}

fn parse(args: &[String]) -> std::result::Result<Opts, String> {
    let mut opts = Opts {
        state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        json: false,
        dry_run: false,
        once: false,
        interval: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => opts.json = true,
            "--dry-run" => opts.dry_run = true,
            "--once" => opts.once = true,
            "--interval" => {
                let text = it
                    .next()
                    .ok_or("--interval needs a duration (500ms, 30s, 5m)")?;
                opts.interval = Some(crate::ops::reconcile::parse_interval(text)?);
            }
            "--state-dir" => {
                opts.state_dir = it
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--state-dir needs a directory")?;
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(opts)
}

pub fn run(args: &[String]) -> i32 {
    crate::logging::init(None, log::LevelFilter::Info);
    let Some(cmd) = args.first() else {
        eprintln!("{USAGE}");
        return 2;
    };
    if matches!(cmd.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return 0;
    }
    if cmd == "explain" {
        return crate::ops::explain::run(&args[1..]);
    }
    if cmd == "install" {
        return crate::ops::install::run(&args[1..]);
    }
    let opts = match parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gwsteer {cmd}: {e}\n\n{USAGE}");
            return 2;
        }
    };
    let outcome = match cmd.as_str() {
        "version" => {
            println!("gwsteer {}", env!("CARGO_PKG_VERSION"));
            println!("CNI versions: {}", crate::cni::version::supported_list());
            Ok(0)
        }
        "show" => crate::ops::show::run(&opts.state_dir, opts.json),
        "reconcile" if opts.once && opts.interval.is_some() => {
            eprintln!("gwsteer reconcile: --once and --interval exclude each other\n\n{USAGE}");
            return 2;
        }
        "reconcile" => {
            crate::ops::reconcile::run(&opts.state_dir, opts.dry_run, opts.once, opts.interval)
        }
        "cleanup" => crate::ops::cleanup::run(&opts.state_dir, opts.dry_run),
        other => {
            eprintln!("gwsteer: unknown command \"{other}\"\n\n{USAGE}");
            return 2;
        }
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gwsteer {cmd}: {e}");
            1
        }
    }
}
