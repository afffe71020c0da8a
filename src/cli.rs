//! The operator CLI (no `CNI_COMMAND`): version, show, explain, reconcile,
//! agent, cleanup, install.
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
  agent [--interval DUR] [--sweep-grace DUR] [--no-adopt] [--cni-cache-dir DIR]
        [--cni-conf-dir DIR] [--plugin FILE] [--heartbeat FILE]
                                the node agent: repairs on kernel notifications
                                (rules, routes, links, addresses, nftables) and
                                every DUR (default 60s); removes records whose
                                network namespace is gone for the grace (default
                                5m); steers pods libcni's cache (default
                                /var/lib/cni/results) lists and gwsteer missed,
                                with their cached conflist or, when that has no
                                gwsteer, their network's in the conf dir (default
                                /etc/cni/net.d); with --plugin, keeps that plugin
                                object chained in the conf dir when the primary
                                rewrites its file; --heartbeat: touched after every
                                round; stops on SIGTERM/SIGINT (exit 0)
  agent --alive FILE [--interval DUR]
                                0 if the agent touched its heartbeat FILE within
                                3 intervals (a liveness probe), else 1
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
    sweep_grace: Option<std::time::Duration>,
    no_adopt: bool,
    cni_cache_dir: Option<PathBuf>,
    cni_conf_dir: Option<PathBuf>,
    chain_plugin: Option<PathBuf>,
    heartbeat: Option<PathBuf>,
    alive: Option<PathBuf>,
}

fn parse(args: &[String]) -> std::result::Result<Opts, String> {
    let mut opts = Opts {
        state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        json: false,
        dry_run: false,
        once: false,
        interval: None,
        sweep_grace: None,
        no_adopt: false,
        cni_cache_dir: None,
        cni_conf_dir: None,
        chain_plugin: None,
        heartbeat: None,
        alive: None,
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
            "--sweep-grace" => {
                let text = it
                    .next()
                    .ok_or("--sweep-grace needs a duration (500ms, 30s, 5m)")?;
                let grace = crate::ops::reconcile::parse_interval(text)
                    .map_err(|e| e.replace("--interval", "--sweep-grace"))?;
                opts.sweep_grace = Some(grace);
            }
            "--no-adopt" => opts.no_adopt = true,
            "--cni-cache-dir" => {
                opts.cni_cache_dir = Some(
                    it.next()
                        .map(PathBuf::from)
                        .ok_or("--cni-cache-dir needs a directory")?,
                );
            }
            "--cni-conf-dir" => {
                opts.cni_conf_dir = Some(
                    it.next()
                        .map(PathBuf::from)
                        .ok_or("--cni-conf-dir needs a directory")?,
                );
            }
            "--plugin" => {
                opts.chain_plugin = Some(
                    it.next()
                        .map(PathBuf::from)
                        .ok_or("--plugin needs the plugin object's file")?,
                );
            }
            "--heartbeat" => {
                opts.heartbeat = Some(
                    it.next()
                        .map(PathBuf::from)
                        .ok_or("--heartbeat needs a file")?,
                );
            }
            "--alive" => {
                opts.alive = Some(
                    it.next()
                        .map(PathBuf::from)
                        .ok_or("--alive needs the heartbeat file")?,
                );
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
    if cmd != "agent"
        && (opts.sweep_grace.is_some()
            || opts.no_adopt
            || opts.cni_cache_dir.is_some()
            || opts.cni_conf_dir.is_some()
            || opts.chain_plugin.is_some()
            || opts.heartbeat.is_some()
            || opts.alive.is_some())
    {
        eprintln!(
            "gwsteer {cmd}: --sweep-grace, --no-adopt, --cni-cache-dir, --cni-conf-dir, --plugin, --heartbeat and --alive are agent options\n\n{USAGE}"
        );
        return 2;
    }
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
        "agent" if opts.once || opts.dry_run || opts.json => {
            eprintln!(
                "gwsteer agent: --once, --dry-run and --json are not agent options\n\n{USAGE}"
            );
            return 2;
        }
        "agent" if opts.alive.is_some() => {
            let interval = opts.interval.unwrap_or(std::time::Duration::from_secs(60));
            Ok(opts
                .alive
                .as_deref()
                .map_or(2, |f| crate::ops::agent::alive(f, interval)))
        }
        "agent" => {
            let mut agent = crate::ops::agent::Options::new(opts.state_dir.clone());
            agent.interval = opts.interval.unwrap_or(agent.interval);
            agent.sweep_grace = opts.sweep_grace.unwrap_or(agent.sweep_grace);
            agent.adopt = !opts.no_adopt;
            agent.cni_cache_dir = opts.cni_cache_dir.clone().unwrap_or(agent.cni_cache_dir);
            agent.cni_conf_dir = opts.cni_conf_dir.clone().unwrap_or(agent.cni_conf_dir);
            agent.chain_plugin = opts.chain_plugin.clone();
            agent.heartbeat = opts.heartbeat.clone();
            crate::ops::agent::run(agent)
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
