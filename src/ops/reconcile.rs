//! Reconcile: make the node match the state store again, as
//! metallb-node-route-agent does for its table, but for every record.
//!
//! One round, with the lock of every network of the state dir held (taken in
//! name order, each wait bounded, so a round never deadlocks with the verbs,
//! which take one lock each):
//!
//! 1. Store: holds a record lists but lacks are re-created, holds whose
//!    attachment has no record (a crash) are dropped, and node groups nobody
//!    holds are removed (objects, then record), as GC does; infrastructure
//!    groups stay until `cleanup`. The same for the node-wide scope.
//! 2. Imposters, found with one rule dump and one route dump per owned table
//!    (owned tables: the tables of the recorded node groups' routes):
//!    rules that point at an owned table and are not gwsteer's; gwsteer
//!    (protocol 211) rules that no record has (lost state); routes in an
//!    owned table where no recorded route lives; gwsteer routes no group has
//!    in the tables that such orphan rules point at. All are removed. Routes
//!    and rules elsewhere that are not gwsteer's are never touched.
//! 3. Every recorded object, per attachment and per held node group: missing
//!    ones are re-created, drifted ones repaired (`ensure` replaces a route in
//!    place and rewrites a sysctl).
//!
//! Every change is logged (info) and returned as one line; with `dry_run`
//! nothing changes and the lines say what would be done.
//!
//! Records are written before ADD touches the kernel and deleted after DEL
//! has removed everything, both under the network's lock: with every lock
//! held, each gwsteer object in the kernel belongs to a record that this
//! round has read. A network whose state appears while the round runs (its
//! first ADD) is locked and read after the dump, before anything is judged
//! an orphan. The round assumes that every gwsteer network on this node uses
//! this state dir, as `cleanup` does.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use crate::engine::audit::{Imposter, owned_tables, route_slots};
use crate::engine::{self, LOCK_WAIT};
use crate::error::{Result, code};
use crate::kernel::Kernel;
use crate::model::{Object, Presence, RTPROT_GWSTEER, Restore, RuleSpec, Side};
use crate::store::{self, NodeGroup, Record, Store};

/// One network's state, read under its lock.
struct Network {
    store: Store,
    records: Vec<Record>,
    /// Groups that stay (held, readable).
    groups: Vec<NodeGroup>,
}

/// What one round found and did.
#[derive(Debug, Default)]
pub struct Round {
    pub dry_run: bool,
    /// One line per change made (or, dry, that would be made).
    pub changes: Vec<String>,
    /// Problems it could not fix (each also logged).
    pub errors: Vec<String>,
}

impl Round {
    /// Log and record one change; do it unless dry. A failure is recorded as
    /// an error and the round goes on.
    fn act(&mut self, done: &str, would: &str, what: String, f: impl FnOnce() -> Result<()>) {
        if self.dry_run {
            log::info!("would {would} {what}");
            self.changes.push(format!("would {would} {what}"));
            return;
        }
        match f() {
            Ok(()) => {
                log::info!("{done} {what}");
                self.changes.push(format!("{done} {what}"));
            }
            Err(e) => self.error(format!("cannot {would} {what}: {e}")),
        }
    }

    fn error(&mut self, msg: String) {
        log::error!("{msg}");
        self.errors.push(msg);
    }

    /// Nothing found: the node matched the records.
    pub fn clean(&self) -> bool {
        self.changes.is_empty() && self.errors.is_empty()
    }
}

/// Lock and read every network under `state_dir` not in `nets` yet.
fn lock_networks(
    state_dir: &Path,
    nets: &mut BTreeMap<String, Network>,
    round: &mut Round,
) -> Result<()> {
    for name in store::networks(state_dir)? {
        if nets.contains_key(&name) {
            continue;
        }
        let store = Store::open(state_dir, &name, LOCK_WAIT)?;
        if store.waited > std::time::Duration::from_secs(1) {
            log::warn!(
                "waited {} ms for the state store lock of {name}",
                store.waited.as_millis()
            );
        } else {
            log::debug!(
                "state store lock of {name} taken in {} µs",
                store.waited.as_micros()
            );
        }
        let (records, corrupt) = store.list()?;
        for c in corrupt {
            round.error(format!(
                "{name}: unreadable record {} set aside as {} ({})",
                c.file.display(),
                c.moved_to.display(),
                c.reason
            ));
        }
        let mut groups = Vec::new();
        for key in store.group_keys()? {
            match store.group(&key) {
                Ok(Some(g)) => groups.push(g),
                Ok(None) => {}
                Err(e) if e.code == code::STATE => round.error(format!("{name}: {e}")),
                Err(e) => return Err(e),
            }
        }
        nets.insert(
            name,
            Network {
                store,
                records,
                groups,
            },
        );
    }
    Ok(())
}

/// Step 1: orphan holds and groups nobody holds.
fn tidy_store(
    name: &str,
    net: &mut Network,
    kernel: &mut dyn Kernel,
    round: &mut Round,
) -> Result<()> {
    let store = &net.store;
    // A hold a record lists but lacks (a crash between writing the record
    // and the hold): without it the group could go with its other holders.
    for r in &net.records {
        for key in &r.holds {
            if net.groups.iter().any(|g| &g.key == key)
                && !store.holders(key)?.contains(&r.id.stem())
            {
                round.act(
                    "re-created",
                    "re-create",
                    format!("{name}: missing hold of {key} by attachment {}", r.id),
                    || store.hold(key, &r.id),
                );
            }
        }
    }
    let mut kept = Vec::new();
    for group in std::mem::take(&mut net.groups) {
        let mut holders = 0;
        for holder in store.holders(&group.key)? {
            if store.has_record_stem(&holder) {
                holders += 1;
                continue;
            }
            round.act(
                "dropped",
                "drop",
                format!(
                    "{name}: orphan hold of {} by {holder} (no record)",
                    group.key
                ),
                || store.drop_holder(&group.key, &holder),
            );
        }
        // Infrastructure (the gateway network's bridge and VXLAN) stays
        // without holders until `gwsteer cleanup`, and is kept right.
        if holders > 0
            || net.records.iter().any(|r| r.holds.contains(&group.key))
            || group.key.is_infrastructure()
        {
            kept.push(group);
            continue;
        }
        round.act(
            "removed",
            "remove",
            format!("{name}: node group {} (nobody holds it)", group.key),
            || engine::remove_group(store, kernel, &group.key),
        );
    }
    net.groups = kept;
    for r in &net.records {
        for key in &r.holds {
            if !net.groups.iter().any(|g| &g.key == key) {
                round.error(format!(
                    "{name}: attachment {} holds node group {key}, which has no record; \
                     a new ADD of the attachment re-creates it",
                    r.id
                ));
            }
        }
    }
    Ok(())
}

/// Step 1 for the node scope: holds of network groups that are gone (a
/// network's state removed by hand), and node-wide groups nobody holds
/// (their sysctls restored). Holders from networks this round has not
/// locked are left alone: a network's directory exists before it holds
/// anything here.
fn tidy_node_scope(
    state_dir: &Path,
    nets: &BTreeMap<String, Network>,
    kernel: &mut dyn Kernel,
    round: &mut Round,
) -> Result<()> {
    if !state_dir.join(store::NODE_SCOPE).join("lock").exists() {
        return Ok(());
    }
    let node = Store::open(state_dir, store::NODE_SCOPE, LOCK_WAIT)?;
    for key in node.group_keys()? {
        let mut holders = 0;
        for holder in node.holders(&key)? {
            let (net, group) = holder.split_once('@').unwrap_or((holder.as_str(), ""));
            // A group whose file was set aside as corrupt is not gone while
            // attachments still hold it: its last DEL finds its table by the
            // claim.
            let gone = match nets.get(net) {
                Some(n) => {
                    !n.groups.iter().any(|g| g.key.to_string() == group)
                        && !n
                            .records
                            .iter()
                            .any(|r| r.holds.iter().any(|k| k.to_string() == group))
                }
                None => !state_dir.join(net).exists(),
            };
            if !gone {
                holders += 1;
                continue;
            }
            round.act(
                "dropped",
                "drop",
                format!("node-wide hold of {key} by {holder} (that group is gone)"),
                || node.drop_holder(&key, &holder),
            );
        }
        if holders == 0 {
            round.act(
                "removed",
                "remove",
                format!("node-wide group {key} (nobody holds it)"),
                || engine::remove_group(&node, kernel, &key),
            );
        }
    }
    Ok(())
}

/// gwsteer's node rules present in the kernel (canonical forms).
fn present_rules(kernel: &mut dyn Kernel) -> Result<HashSet<RuleSpec>> {
    Ok(kernel
        .rules_with_protocol(&[])?
        .into_iter()
        .filter(|(_, p)| *p == RTPROT_GWSTEER)
        .map(|(spec, _)| spec.canonical())
        .collect())
}

/// Step 2: remove imposters and orphans.
fn remove_imposters(
    state_dir: &Path,
    nets: &mut BTreeMap<String, Network>,
    kernel: &mut dyn Kernel,
    round: &mut Round,
) -> Result<()> {
    let list: Vec<u32> = owned_tables(nets.values().flat_map(|n| &n.groups))
        .into_iter()
        .collect();
    let rules = kernel.rules_with_protocol(&list)?;
    // A network whose first ADD ran since the round began: its objects are
    // in the dump, so its records must be read before judging them.
    lock_networks(state_dir, nets, round)?;
    let owned = owned_tables(nets.values().flat_map(|n| &n.groups));
    let recorded: Vec<&Object> = nets
        .values()
        .flat_map(|n| {
            n.records
                .iter()
                .flat_map(|r| &r.objects)
                .chain(n.groups.iter().flat_map(|g| &g.objects))
        })
        .filter(|o| o.side() == Side::Node)
        .collect();
    let recorded_rules: HashSet<RuleSpec> = recorded
        .iter()
        .filter_map(|o| match o {
            Object::Rule { spec, .. } => Some(spec.canonical()),
            _ => None,
        })
        .collect();
    let slots = route_slots(recorded.iter().copied());

    let mut orphan_tables = BTreeSet::new();
    for (spec, protocol) in rules {
        let ours = protocol == RTPROT_GWSTEER;
        if ours && recorded_rules.contains(&spec.canonical()) {
            continue;
        }
        if !ours && !owned.contains(&spec.table) {
            continue;
        }
        if ours && !owned.contains(&spec.table) && !is_reserved_table(spec.table) {
            orphan_tables.insert(spec.table);
        }
        let imposter = Imposter {
            object: Object::node_rule(spec),
            protocol,
        };
        round.act("removed", "remove", imposter.to_string(), || {
            kernel.remove_foreign(&imposter.object, protocol)
        });
    }
    for table in owned.iter().chain(&orphan_tables) {
        let in_owned = owned.contains(table);
        for (spec, protocol) in kernel.table_routes(*table)? {
            if slots.contains(&spec.slot()) || (!in_owned && protocol != RTPROT_GWSTEER) {
                continue;
            }
            let imposter = Imposter {
                object: Object::node_route(spec),
                protocol,
            };
            round.act("removed", "remove", imposter.to_string(), || {
                kernel.remove_foreign(&imposter.object, protocol)
            });
        }
    }
    Ok(())
}

/// local, main, default and "unspec": never gwsteer's to sweep.
fn is_reserved_table(table: u32) -> bool {
    matches!(table, 0 | 253..=255)
}

/// Step 3 for one list of recorded objects.
fn ensure_objects(
    whose: &str,
    objects: &[Object],
    restore: Option<&Restore>,
    kernel: &mut dyn Kernel,
    present: &HashSet<RuleSpec>,
    round: &mut Round,
) {
    for obj in objects {
        // An uplink is made again with what its group saved of it (its
        // addresses and routes: enslaving drops the IPv6 ones).
        let make = |kernel: &mut dyn Kernel| match obj {
            Object::Uplink { dev, .. } => {
                kernel.ensure_uplink(obj, restore.and_then(|r| r.uplinks.get(dev)))
            }
            _ => kernel.ensure(obj),
        };
        let state = match obj {
            Object::Rule {
                spec,
                side: Side::Node,
            } => Ok(if present.contains(&spec.canonical()) {
                Presence::Present
            } else {
                Presence::Missing
            }),
            _ => kernel.observe(obj),
        };
        match state {
            Ok(Presence::Present) => {}
            Ok(Presence::Missing) => round.act(
                "re-created",
                "re-create",
                format!("missing {obj} ({whose})"),
                || make(kernel),
            ),
            Ok(Presence::Drifted(how)) => round.act(
                "repaired",
                "repair",
                format!("drifted {obj} ({whose}): {how}"),
                || make(kernel),
            ),
            Err(e) if obj.side() == Side::Pod && e.code == code::UNKNOWN_CONTAINER => {
                log::info!("{whose}: pod namespace gone, {obj} left for DEL or GC");
            }
            Err(e) => round.error(format!("cannot read {obj} ({whose}): {e}")),
        }
    }
}

/// Step 3: every recorded object, per attachment and per node group.
fn ensure_recorded(
    nets: &BTreeMap<String, Network>,
    kernel: &mut dyn Kernel,
    round: &mut Round,
) -> Result<()> {
    let present = present_rules(kernel)?;
    for (name, net) in nets {
        for g in &net.groups {
            let whose = format!("network {name}, node group {}", g.key);
            ensure_objects(
                &whose,
                &g.objects,
                Some(&g.restore),
                kernel,
                &present,
                round,
            );
        }
        for r in &net.records {
            let whose = format!("network {name}, attachment {}", r.id);
            let (pod, node): (Vec<Object>, Vec<Object>) = r
                .objects
                .iter()
                .cloned()
                .partition(|o| o.side() == Side::Pod);
            ensure_objects(&whose, &node, None, kernel, &present, round);
            if pod.is_empty() {
                continue;
            }
            let netns = r.netns.as_ref().map(PathBuf::from);
            match engine::new_kernel(netns) {
                Ok(mut pod_kernel) => {
                    ensure_objects(&whose, &pod, None, pod_kernel.as_mut(), &present, round)
                }
                Err(e) if e.code == code::UNKNOWN_CONTAINER => {
                    log::info!("{whose}: pod namespace gone; left for DEL or GC")
                }
                Err(e) => round.error(format!("{whose}: {e}")),
            }
        }
    }
    Ok(())
}

/// One reconcile round over every network under `state_dir`.
pub fn round(state_dir: &Path, dry_run: bool, kernel: &mut dyn Kernel) -> Result<Round> {
    let mut round = Round {
        dry_run,
        ..Round::default()
    };
    let mut nets = BTreeMap::new();
    lock_networks(state_dir, &mut nets, &mut round)?;
    for (name, net) in nets.iter_mut() {
        tidy_store(name, net, kernel, &mut round)?;
    }
    tidy_node_scope(state_dir, &nets, kernel, &mut round)?;
    remove_imposters(state_dir, &mut nets, kernel, &mut round)?;
    ensure_recorded(&nets, kernel, &mut round)?;
    log::info!(
        "reconcile{}: {} network(s), {} change(s), {} problem(s) left",
        if dry_run { " (dry run)" } else { "" },
        nets.len(),
        round.changes.len(),
        round.errors.len()
    );
    Ok(round)
}

/// `30s`, `5m`, `500ms`, `1h`, or plain seconds.
/// Without `--once`, rounds run every `--interval` (60 s, as
/// metallb-node-route-agent's reconcile timer) until the process is stopped;
/// a failed round is logged and the next one runs. Each change is printed
/// on stdout and logged on stderr.
pub fn run(
    state_dir: &Path,
    dry_run: bool,
    once: bool,
    interval: Option<std::time::Duration>,
) -> Result<i32> {
    let every = interval.unwrap_or(std::time::Duration::from_secs(60));
    loop {
        let mut kernel = engine::new_kernel(None)?;
        let outcome = round(state_dir, dry_run, kernel.as_mut());
        if let Ok(round) = &outcome {
            for line in &round.changes {
                println!("{line}");
            }
            for line in &round.errors {
                println!("problem: {line}");
            }
        }
        if once {
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

pub fn parse_interval(text: &str) -> std::result::Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("--interval: \"{text}\" is not a duration like 500ms, 30s, 5m, 1h"))?;
    let ms = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(|| format!("--interval: \"{text}\" is not a duration like 500ms, 30s, 5m, 1h"))?;
    if ms < 100 {
        return Err(format!("--interval: {text} is too short (at least 100ms)"));
    }
    Ok(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_interval("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_interval("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_interval("60").unwrap(), Duration::from_secs(60));
        for bad in ["", "5x", "m", "-1s", "10ms", "1.5s"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn imposters_say_what_they_are() {
        let rule = RuleSpec {
            family: crate::model::Family::V4,
            priority: 500,
            src: Some("10.9.9.9/32".parse().unwrap()),
            dst: None,
            fwmark: None,
            fwmask: None,
            iif: None,
            table: 100,
        };
        let foreign = Imposter {
            object: Object::node_rule(rule.clone()),
            protocol: 0,
        };
        assert_eq!(
            foreign.to_string(),
            "foreign inet rule 500: from 10.9.9.9 lookup 100 proto unspec (points at owned table 100)"
        );
        let orphan = Imposter {
            object: Object::node_rule(rule),
            protocol: RTPROT_GWSTEER,
        };
        assert!(orphan.to_string().starts_with("orphan inet rule 500"));
    }

    #[test]
    fn canonical_rules_compare_like_the_kernel() {
        let a = RuleSpec {
            family: crate::model::Family::V4,
            priority: 1000,
            src: Some("10.0.0.1/32".parse().unwrap()),
            dst: Some("0.0.0.0/0".parse().unwrap()),
            fwmark: Some(0x14),
            fwmask: Some(u32::MAX),
            iif: None,
            table: 100,
        };
        let b = RuleSpec {
            dst: None,
            fwmask: None,
            ..a.clone()
        };
        assert_eq!(a.canonical(), b.canonical());
    }
}
