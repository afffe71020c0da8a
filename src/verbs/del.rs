//! DEL: remove exactly what the record says this attachment made. Anything
//! already gone (netns, link, rule, record, prevResult) is success.

use serde_json::Value;

use crate::cni::{Command, Env, result};
use crate::config::{self, Config, DEFAULT_STATE_DIR};
use crate::engine::{LOCK_WAIT, new_kernel, open_existing_store, teardown};
use crate::error::{Result, code};
use crate::kernel::Kernel;
use crate::model::GroupKey;
use crate::plan::{self, Pod};
use crate::store::{AttachmentId, Record, SCHEMA, Store, now};

pub fn run(config: &Config, env: &Env) -> Result<()> {
    // Declared before the store, so dropped after its lock: see `by_record`.
    let mut kernel = None;
    // No store, nothing recorded: DEL ends (a state directory that is a
    // file, read-only, or without this network is not made for a DEL).
    let Some(store) = open_existing_store(config)? else {
        log::info!("no state store for this network; nothing to remove");
        return Ok(());
    };
    // A steering policy's table, for a group whose file is lost.
    let table_of = |key: &GroupKey| match key {
        GroupKey::Policy(name) => config
            .steering
            .iter()
            .find(|p| &p.name == name)
            .and_then(|p| p.table),
        _ => None,
    };
    match by_record(&store, env, &config.network, &mut kernel, &table_of) {
        Err(e) if e.code == code::STATE => {
            // The record was unreadable (and is set aside): remove what the
            // config and prevResult say this attachment made, so no rule is
            // left to steer the next pod that gets the address; still report.
            if let Err(undo) = by_plan(&store, config, env) {
                log::error!("removing by config and prevResult: {undo}");
            }
            Err(e)
        }
        other => other,
    }
}

/// Undo what ADD would have made for this attachment with this config.
fn by_plan(store: &Store, config: &Config, env: &Env) -> Result<()> {
    let Some(prev) = &config.prev_result else {
        log::warn!("no prevResult either: nothing to remove by plan");
        return Ok(());
    };
    let pod = Pod {
        namespace: env.pod_namespace.clone(),
        name: env.pod_name.clone(),
        addresses: result::pod_addresses(prev, &env.ifname)?,
    };
    let firewall = crate::engine::firewall_backend(config)?;
    // DEL asks the node nothing: what the pod's objects were is recorded.
    let facts = plan::Facts {
        firewall: firewall.as_ref().map(|f| f.backend),
        gateway: None,
        pod_link: None,
    };
    let plan = plan::plan(config, &pod, &facts);
    if plan.pod_objects.is_empty() && plan.groups.is_empty() {
        return Ok(());
    }
    let record = Record {
        schema: SCHEMA,
        network: config.network.clone(),
        id: env.attachment(),
        netns: env.netns.as_ref().map(|p| p.display().to_string()),
        pod_namespace: env.pod_namespace.clone(),
        pod_name: env.pod_name.clone(),
        objects: plan.pod_objects,
        holds: plan.groups.into_iter().map(|g| g.key).collect(),
        created: now(),
        notes: Vec::new(),
    };
    log::warn!(
        "record unreadable: removing {} object(s) by config and prevResult",
        record.objects.len()
    );
    let mut kernel = crate::engine::new_kernel_with(env.netns.clone(), firewall)?;
    teardown(store, kernel.as_mut(), &record)
}

/// The kernel backend is left in `kernel`, for the caller to drop after the
/// store's lock: closing an nf_tables socket after a commit that deleted set
/// elements waits for the kernel's deferred clean-up (an RCU grace period,
/// ~30 ms on the benchmark VM), and concurrent DELs must not queue for the
/// lock behind each other's waits.
///
/// `table_of` gives a steering policy's table from the config (`None`
/// without one): when the record's policy group file is lost (set aside as
/// corrupt) and this DEL is its last holder, gwsteer's routes in that table
/// and rules pointing at it are removed too, as nothing else knows them.
fn by_record(
    store: &Store,
    env: &Env,
    network: &str,
    kernel: &mut Option<Box<dyn Kernel>>,
    table_of: &dyn Fn(&GroupKey) -> Option<u32>,
) -> Result<()> {
    let id: AttachmentId = env.attachment();
    crate::logging::set_context(format!(
        "DEL {id} net={network} pod={}/{}",
        env.pod_namespace.as_deref().unwrap_or("-"),
        env.pod_name.as_deref().unwrap_or("-")
    ));
    let Some(record) = store.get(&id)? else {
        log::info!("nothing recorded for this attachment; nothing to remove");
        return Ok(());
    };
    let started = std::time::Instant::now();
    // The runtime may send DEL without K8S_* args: the record knows the pod.
    crate::logging::set_context(format!(
        "DEL {id} net={network} pod={}/{}",
        record.pod_namespace.as_deref().unwrap_or("-"),
        record.pod_name.as_deref().unwrap_or("-")
    ));
    if !record.objects.is_empty() || !record.holds.is_empty() {
        let netns = env
            .netns
            .clone()
            .or_else(|| record.netns.as_ref().map(Into::into));
        let kernel = kernel.insert(new_kernel(netns)?);
        let lost: Vec<(&GroupKey, u32)> = record
            .holds
            .iter()
            .filter_map(|k| table_of(k).map(|t| (k, t)))
            .filter(|(k, _)| !matches!(store.group(k), Ok(Some(_))))
            .collect();
        teardown(store, kernel.as_mut(), &record)?;
        for (key, table) in lost {
            if store.unheld(key)? {
                log::warn!(
                    "group {key}: its file was lost; removing gwsteer's objects of table {table}"
                );
                crate::engine::claims::sweep_table(kernel.as_mut(), table)?;
            }
        }
    }
    store.delete(&id)?;
    log::info!(
        "removed {} object(s), released [{}] in {} µs",
        record.objects.len(),
        GroupKey::list(&record.holds),
        started.elapsed().as_micros()
    );
    Ok(())
}

/// DEL of an attachment whose names are over gwsteer's limits (a network
/// name over [`config::MAX_NETWORK_NAME`], a `stateDir` over
/// [`config::MAX_PATH`], a container id or interface name over theirs): every ADD refuses such names, so nothing can be recorded
/// for it, and DEL succeeds without opening the store (whose file names
/// could not hold them). `None` for every other DEL.
pub fn beyond_limits(raw: Option<&Value>) -> Option<String> {
    let raw = raw?;
    let network = raw.get("name").and_then(Value::as_str);
    let why = match network {
        Some(n) if config::valid_cni_name(n) && n.len() > config::MAX_NETWORK_NAME => format!(
            "name: the network name is {} bytes long; the limit is {}",
            n.len(),
            config::MAX_NETWORK_NAME
        ),
        _ => match raw.get("stateDir").and_then(Value::as_str) {
            Some(dir) if dir.len() > config::MAX_PATH => format!(
                "stateDir: the path is {} bytes long; the limit is {}",
                dir.len(),
                config::MAX_PATH
            ),
            _ => Env::beyond_limits()?,
        },
    };
    log_to_config_log_file(raw);
    log::warn!("DEL: {why}; no ADD takes such a name, so nothing is recorded: nothing to remove");
    Some(why)
}

/// DEL with a configuration that no longer validates: undo by record when
/// the network name and state directory can still be read from it.
/// `None` when even that is impossible (the caller reports the config error).
pub fn lenient(stdin: &[u8]) -> Option<Result<Value>> {
    let raw: Value = serde_json::from_slice(stdin).ok()?;
    let network = raw.get("name")?.as_str()?;
    if !config::valid_cni_name(network) {
        return None;
    }
    let state_dir = raw
        .get("stateDir")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_STATE_DIR);
    let env = Env::from_process(Command::Del).ok()?;
    log_to_config_log_file(&raw);
    log::warn!("configuration does not validate; removing by record only");
    let mut kernel = None;
    let outcome = Store::open_existing(state_dir.as_ref(), network, LOCK_WAIT)
        .and_then(|store| match store {
            Some(store) => by_record(&store, &env, network, &mut kernel, &|_| None),
            None => Ok(()),
        })
        .map(|()| Value::Null);
    Some(outcome)
}

/// Logging, at info, to the `logFile` of a config that does not validate as
/// a whole, when it names an absolute path: the operator looks for this DEL
/// there.
fn log_to_config_log_file(raw: &Value) {
    let log_file = raw
        .get("logFile")
        .and_then(Value::as_str)
        .filter(|p| p.starts_with('/'))
        .map(std::path::Path::new);
    crate::logging::init_plugin(log_file, log::LevelFilter::Info);
}
