//! DEL: remove exactly what the record says this attachment made. Anything
//! already gone (netns, link, rule, record, prevResult) is success.

use serde_json::Value;

use super::{LOCK_WAIT, new_kernel, open_store, teardown};
use crate::cni::{Command, Env};
use crate::config::{self, Config, DEFAULT_STATE_DIR};
use crate::error::Result;
use crate::store::{AttachmentId, Store};

pub fn run(config: &Config, env: &Env) -> Result<()> {
    let store = open_store(config)?;
    by_record(&store, env, &config.network)
}

fn by_record(store: &Store, env: &Env, network: &str) -> Result<()> {
    let id: AttachmentId = env.attachment();
    crate::logging::set_context(format!("DEL {id} net={network}"));
    let Some(record) = store.get(&id)? else {
        log::info!("nothing recorded for this attachment; nothing to remove");
        return Ok(());
    };
    let started = std::time::Instant::now();
    if !record.objects.is_empty() || !record.holds.is_empty() {
        let netns = env
            .netns
            .clone()
            .or_else(|| record.netns.as_ref().map(Into::into));
        let mut kernel = new_kernel(netns)?;
        teardown(store, kernel.as_mut(), &record)?;
    }
    store.delete(&id)?;
    log::info!(
        "removed {} object(s), released [{}] in {} µs",
        record.objects.len(),
        record.holds.join(", "),
        started.elapsed().as_micros()
    );
    Ok(())
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
    crate::logging::init(None, log::LevelFilter::Info);
    log::warn!("configuration does not validate; removing by record only");
    let outcome = Store::open(state_dir.as_ref(), network, LOCK_WAIT)
        .and_then(|store| by_record(&store, &env, network))
        .map(|()| Value::Null);
    Some(outcome)
}
