//! GC: remove every attachment of this network that the runtime no longer
//! lists in `cni.dev/valid-attachments`, and node groups nobody holds.

use std::collections::BTreeSet;

use crate::config::Config;
use crate::engine::{combine, new_kernel, open_store, remove_group, teardown_stored};
use crate::error::{Error, Result};

pub fn run(config: &Config) -> Result<()> {
    crate::logging::set_context(format!("GC net={}", config.network));
    let valid: BTreeSet<(String, String)> = config
        .valid_attachments
        .clone()
        .ok_or_else(|| {
            Error::config("cni.dev/valid-attachments: required for GC (an empty list removes all)")
        })?
        .into_iter()
        .collect();
    let store = open_store(config)?;
    let (records, corrupt) = store.list()?;
    for c in &corrupt {
        log::error!(
            "set aside unreadable record {} ({})",
            c.moved_to.display(),
            c.reason
        );
    }
    let stale: Vec<_> = records
        .into_iter()
        .filter(|r| !valid.contains(&(r.id.container_id.clone(), r.id.ifname.clone())))
        .collect();
    let mut errors = Vec::new();
    let mut kernel = None;
    for record in &stale {
        log::info!("stale attachment {}: removing", record.id);
        // Pod-side objects live in the pod's namespace, which the record
        // names (GC has no CNI_NETNS).
        match teardown_stored(&store, &mut kernel, record) {
            Ok(()) => store.delete(&record.id)?,
            Err(e) => errors.push(e.context(format!("GC of {}", record.id))),
        }
    }
    // Holds left by a crash between writing a hold and the record, and
    // groups whose last holder went without removing them.
    for key in store.group_keys()? {
        for holder in store.holders(&key)? {
            if !store.has_record_stem(&holder) {
                log::info!("group {key}: dropping orphan hold {holder}");
                store.drop_holder(&key, &holder)?;
            }
        }
        if store.unheld(&key)? && !key.is_infrastructure() {
            let k = match &mut kernel {
                Some(k) => k,
                None => kernel.insert(new_kernel(None)?),
            };
            log::info!("group {key}: no holder left, removing");
            if let Err(e) = remove_group(&store, k.as_mut(), &key) {
                errors.push(e);
            }
        }
    }
    log::info!("removed {} stale attachment(s)", stale.len());
    match combine(errors) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
