//! The operator CLI (no `CNI_COMMAND`): version, show, explain, reconcile, cleanup.
//! Exit codes: 0 ok, 1 found problems, 2 usage error.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::config::DEFAULT_STATE_DIR;
use crate::error::Result;
use crate::objects::{Kernel, Object, Presence};
use crate::store::{self, Store};
use crate::verbs::{self, LOCK_WAIT};

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
                opts.interval = Some(crate::reconcile::parse_interval(text)?);
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
        return crate::explain::run(&args[1..]);
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
        "show" => show(&opts),
        "reconcile" if opts.once && opts.interval.is_some() => {
            eprintln!("gwsteer reconcile: --once and --interval exclude each other\n\n{USAGE}");
            return 2;
        }
        "reconcile" => reconcile(&opts),
        "cleanup" => cleanup(&opts),
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

fn presence_text(p: &Presence) -> String {
    match p {
        Presence::Present => "present".into(),
        Presence::Missing => "MISSING".into(),
        Presence::Drifted(how) => format!("DRIFTED ({how})"),
    }
}

fn observed(
    kernel: &mut dyn Kernel,
    objects: &[Object],
    problems: &mut usize,
) -> Result<Vec<Value>> {
    let refs: Vec<&Object> = objects.iter().collect();
    let seen = kernel.observe_all(&refs)?;
    Ok(objects
        .iter()
        .zip(seen)
        .map(|(o, p)| {
            if p != Presence::Present {
                *problems += 1;
            }
            json!({"object": o.to_string(), "state": presence_text(&p)})
        })
        .collect())
}

fn show(opts: &Opts) -> Result<i32> {
    let mut problems = 0;
    let mut networks = Vec::new();
    let mut kernel = verbs::new_kernel(None)?;
    for network in store::networks(&opts.state_dir)? {
        let store = Store::open(&opts.state_dir, &network, LOCK_WAIT)?;
        let (records, corrupt) = store.list()?;
        let mut atts = Vec::new();
        for r in &records {
            // Pod-side objects need the pod's namespace; node-side ones do not.
            let objects = observed(kernel.as_mut(), &r.objects, &mut problems)?;
            atts.push(json!({
                "containerID": r.id.container_id, "ifname": r.id.ifname,
                "pod": format!("{}/{}", r.pod_namespace.as_deref().unwrap_or("-"), r.pod_name.as_deref().unwrap_or("-")),
                "holds": r.holds, "objects": objects,
            }));
        }
        let mut groups = Vec::new();
        for key in store.group_keys()? {
            let objects = match store.group(&key)? {
                Some(g) => observed(kernel.as_mut(), &g.objects, &mut problems)?,
                None => Vec::new(),
            };
            groups.push(
                json!({"key": key, "holders": store.holders(&key)?.len(), "objects": objects}),
            );
        }
        problems += corrupt.len();
        networks.push(json!({"network": network, "attachments": atts, "nodeGroups": groups,
            "corrupt": corrupt.iter().map(|c| c.moved_to.display().to_string()).collect::<Vec<_>>()}));
    }
    if opts.json {
        println!("{}", json!({"networks": networks, "problems": problems}));
    } else {
        print!("{}", show_table(&networks));
        if networks.is_empty() {
            println!("no gwsteer state under {}", opts.state_dir.display());
        }
    }
    Ok(if problems == 0 { 0 } else { 1 })
}

/// `show`'s text: one aligned row per object, columns NETWORK, ATTACHMENT
/// (container/ifname, or `group KEY` for node-wide objects a network's
/// attachments share), POD (namespace/name), OBJECT and STATE; then any
/// corrupt records set aside.
fn show_table(networks: &[Value]) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut notes = Vec::new();
    for n in networks {
        let net = s(&n["network"]);
        for g in n["nodeGroups"].as_array().into_iter().flatten() {
            let who = format!("group {} ({} holders)", s(&g["key"]), g["holders"]);
            for o in g["objects"].as_array().into_iter().flatten() {
                rows.push([
                    net.clone(),
                    who.clone(),
                    "-".into(),
                    s(&o["object"]),
                    s(&o["state"]),
                ]);
            }
        }
        for a in n["attachments"].as_array().into_iter().flatten() {
            let who = format!("{}/{}", s(&a["containerID"]), s(&a["ifname"]));
            let objects = a["objects"].as_array().cloned().unwrap_or_default();
            if objects.is_empty() {
                rows.push([
                    net.clone(),
                    who.clone(),
                    s(&a["pod"]),
                    "(no objects)".into(),
                    "-".into(),
                ]);
            }
            for o in &objects {
                rows.push([
                    net.clone(),
                    who.clone(),
                    s(&a["pod"]),
                    s(&o["object"]),
                    s(&o["state"]),
                ]);
            }
        }
        if n["nodeGroups"].as_array().is_none_or(|g| g.is_empty())
            && n["attachments"].as_array().is_none_or(|a| a.is_empty())
        {
            notes.push(format!("network {net}: no attachments"));
        }
        for c in n["corrupt"].as_array().into_iter().flatten() {
            notes.push(format!("network {net}: corrupt record set aside: {}", s(c)));
        }
    }
    let mut out = String::new();
    if !rows.is_empty() {
        let header = ["NETWORK", "ATTACHMENT", "POD", "OBJECT", "STATE"].map(String::from);
        let mut width = [0usize; 4];
        for row in std::iter::once(&header).chain(rows.iter()) {
            for (w, cell) in width.iter_mut().zip(row.iter()) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(rows.iter()) {
            out.push_str(&format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}\n",
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                w0 = width[0],
                w1 = width[1],
                w2 = width[2],
                w3 = width[3]
            ));
        }
    }
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out
}

/// Without `--once`, rounds run every `--interval` (60 s, as
/// metallb-node-route-agent's reconcile timer) until the process is stopped;
/// a failed round is logged and the next one runs. Each change is printed
/// on stdout and logged on stderr.
fn reconcile(opts: &Opts) -> Result<i32> {
    let every = opts.interval.unwrap_or(std::time::Duration::from_secs(60));
    loop {
        let mut kernel = verbs::new_kernel(None)?;
        let outcome = crate::reconcile::round(&opts.state_dir, opts.dry_run, kernel.as_mut());
        if let Ok(round) = &outcome {
            for line in &round.changes {
                println!("{line}");
            }
            for line in &round.errors {
                println!("problem: {line}");
            }
        }
        if opts.once {
            return outcome.map(|round| if round.clean() { 0 } else { 1 });
        }
        if let Err(e) = outcome {
            log::error!(
                "reconcile round failed: {e}; next round in {} ms",
                every.as_millis()
            );
        }
        std::thread::sleep(every);
    }
}

fn cleanup(opts: &Opts) -> Result<i32> {
    let mut kernel = verbs::new_kernel(None)?;
    let mut tables = Vec::new();
    for network in store::networks(&opts.state_dir)? {
        let store = Store::open(&opts.state_dir, &network, LOCK_WAIT)?;
        let (records, _) = store.list()?;
        for r in &records {
            println!(
                "{}attachment {} of {network}",
                if opts.dry_run {
                    "would remove "
                } else {
                    "removing "
                },
                r.id
            );
            if !opts.dry_run {
                verbs::teardown(&store, kernel.as_mut(), r)?;
                store.delete(&r.id)?;
            }
        }
        for key in store.group_keys()? {
            if let Some(g) = store.group(&key)? {
                for o in &g.objects {
                    if let Object::Route { spec, .. } = o {
                        tables.push(spec.table);
                    }
                }
            }
            println!(
                "{}group {key} of {network}",
                if opts.dry_run {
                    "would remove "
                } else {
                    "removing "
                }
            );
            if !opts.dry_run {
                verbs::remove_group(&store, kernel.as_mut(), &key)?;
            }
        }
        if !opts.dry_run {
            store.destroy()?;
        }
    }
    // Node-wide state (shared sysctls): the networks' groups released it
    // above, restoring values; what is left (a network's state removed by
    // hand) is restored and removed now.
    if opts.state_dir.join(store::NODE_SCOPE).join("lock").exists() {
        let node = Store::open(&opts.state_dir, store::NODE_SCOPE, LOCK_WAIT)?;
        for key in node.group_keys()? {
            println!(
                "{}node-wide group {key}",
                if opts.dry_run {
                    "would remove "
                } else {
                    "removing "
                }
            );
            if !opts.dry_run {
                verbs::remove_group(&node, kernel.as_mut(), &key)?;
            }
        }
        if !opts.dry_run {
            node.destroy()?;
        }
    }
    // Anything still carrying gwsteer's protocol number (from a lost record),
    // and gwsteer's routes in the tables such rules point at.
    for rule in kernel.owned_rules(&[])? {
        if !matches!(rule.table, 0 | 253..=255) {
            tables.push(rule.table);
        }
        println!(
            "{}leftover {rule}",
            if opts.dry_run {
                "would remove "
            } else {
                "removing "
            }
        );
        if !opts.dry_run {
            kernel.remove(&Object::node_rule(rule))?;
        }
    }
    tables.sort_unstable();
    tables.dedup();
    for table in tables {
        for (route, proto) in kernel.table_routes(table)? {
            if proto == crate::objects::RTPROT_GWSTEER {
                println!(
                    "{}leftover {route}",
                    if opts.dry_run {
                        "would remove "
                    } else {
                        "removing "
                    }
                );
                if !opts.dry_run {
                    kernel.remove(&Object::node_route(route))?;
                }
            }
        }
    }
    // Links gwsteer made (alias "gwsteer") that no state lists any more:
    // the gateway network's bridge and VXLAN after a lost state store.
    let mut links = crate::netlink::NetlinkKernel::new(None)?;
    for name in links.marked_links()? {
        println!(
            "{}leftover link {name}",
            if opts.dry_run {
                "would remove "
            } else {
                "removing "
            }
        );
        if !opts.dry_run {
            links.delete_marked_link(&name)?;
        }
    }
    // Firewall objects, when nftables is usable here (gwsteer-* tables and
    // gwsteer: RETURN rules in foreign iptables chains).
    let backend = crate::firewall::Backend::Nftables;
    match crate::firewall::open(backend) {
        Ok(mut fw) => {
            for what in fw.cleanup(opts.dry_run)? {
                let verb = if opts.dry_run {
                    "would remove"
                } else {
                    "removed"
                };
                println!("{verb} {backend} {what}");
            }
        }
        Err(e) => log::debug!("{backend} not usable here ({e}); nothing of it to clean"),
    }
    Ok(0)
}
