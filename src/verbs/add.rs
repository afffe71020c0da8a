//! ADD: plan, record the intent, make it real; on failure undo all of it.

use std::time::Instant;

use serde_json::Value;

use crate::cni::{Env, result};
use crate::config::Config;
use crate::engine::{ensure_group, new_kernel_reusing, open_store_for_add, teardown};
use crate::error::{Error, Result, code};
use crate::kernel::Kernel;
use crate::model::GroupKey;
use crate::plan;
use crate::store::{Record, SCHEMA, Store, now};

pub fn run(config: &Config, env: &Env) -> Result<Value> {
    let started = Instant::now();
    crate::facts::admit(config)?;
    let id = env.attachment();
    crate::logging::set_context(format!(
        "ADD {id} net={} pod={}/{}",
        config.network,
        env.pod_namespace.as_deref().unwrap_or("-"),
        env.pod_name.as_deref().unwrap_or("-")
    ));
    let prev = config.prev_result.as_ref().ok_or_else(|| {
        Error::config(
            "prevResult: required; gwsteer is a chained plugin: list it after a primary plugin (bridge, ptp, kindnet, flannel, calico, macvlan…) in the conflist",
        )
    })?;
    let mut netlink = None;
    let (pod, firewall, facts) = super::planning_input(config, env, prev, &mut netlink)?;
    if let Some(why) = plan::mark_conflict(config, &pod, &facts) {
        return Err(Error::config(why));
    }
    let plan = plan::plan(config, &pod, &facts);
    let mut record = Record {
        schema: SCHEMA,
        network: config.network.clone(),
        id: id.clone(),
        netns: env.netns.as_ref().map(|p| p.display().to_string()),
        pod_namespace: env.pod_namespace.clone(),
        pod_name: env.pod_name.clone(),
        objects: plan.pod_objects.clone(),
        holds: plan.groups.iter().map(|g| g.key.clone()).collect(),
        created: now(),
        notes: plan.notes.iter().map(|n| n.text.clone()).collect(),
    };
    for note in &plan.notes {
        if note.warning {
            log::warn!("{}", note.text);
        } else {
            log::info!("{}", note.text);
        }
    }

    let store = open_store_for_add(config)?;
    let old = match store.get(&id) {
        Ok(r) => r,
        Err(e) if e.code == code::STATE => None,
        Err(e) => return Err(e),
    };
    if old.is_none() && plan.pod_objects.is_empty() && plan.groups.is_empty() {
        store.put(&record)?;
        log::info!(
            "not steered (no policy selects this pod); recorded in {} µs",
            started.elapsed().as_micros()
        );
        return Ok(result::convert(prev, config.cni_version));
    }
    let mut kernel = new_kernel_reusing(env.netns.clone(), firewall, netlink)?;
    record.objects = crate::engine::capture(kernel.as_mut(), &plan.pod_objects, old.as_ref())?;
    if let Some(old) = &old {
        replace_old(&store, kernel.as_mut(), old, &record)?;
    }
    store.put(&record)?;
    if let Err((e, touched)) = make_real(&store, kernel.as_mut(), &plan.groups, &record) {
        log::error!("{e}; undoing this ADD");
        // Per-pod objects this ADD never reached are not its to remove: the
        // same rule may be another attachment's (a refused table claim).
        let undo = if touched || old.is_some() {
            record.clone()
        } else {
            Record {
                objects: Vec::new(),
                ..record.clone()
            }
        };
        if let Err(undo) = teardown(&store, kernel.as_mut(), &undo) {
            log::error!("undo incomplete, record kept for DEL/GC: {undo}");
        } else {
            store.delete(&id)?;
        }
        return Err(e);
    }
    log::info!(
        "steered {} address(es): {} object(s), groups [{}] in {} µs",
        pod.addresses.len(),
        record.objects.len(),
        GroupKey::list(&record.holds),
        started.elapsed().as_micros()
    );
    Ok(result::convert(prev, config.cni_version))
}

/// Node groups first, then the record's per-pod objects (the plan's,
/// completed by `engine::capture`), which this ADD owns from here on, even
/// when an older record lists them too (`engine::owner`). On failure, also
/// whether the per-pod objects were reached.
fn make_real(
    store: &Store,
    kernel: &mut dyn Kernel,
    groups: &[crate::model::NodeGroup],
    record: &Record,
) -> std::result::Result<(), (Error, bool)> {
    for group in groups {
        store
            .hold(&group.key, &record.id)
            .and_then(|()| ensure_group(store, kernel, group))
            .map_err(|e| (e, false))?;
    }
    crate::engine::owner::claim(store, record).map_err(|e| (e, true))?;
    for obj in &record.objects {
        log::debug!("ensure {obj}");
        kernel.ensure(obj).map_err(|e| (e, true))?;
    }
    Ok(())
}

/// A second ADD for the same attachment (a retry, or re-ADD after a
/// restart): first record the union of old and new so a crash here loses
/// nothing, then remove what the new plan no longer has.
fn replace_old(store: &Store, kernel: &mut dyn Kernel, old: &Record, new: &Record) -> Result<()> {
    let mut union = new.clone();
    union.objects.extend(
        old.objects
            .iter()
            .filter(|o| !new.objects.contains(o))
            .cloned(),
    );
    union
        .holds
        .extend(old.holds.iter().filter(|h| !new.holds.contains(h)).cloned());
    if union == *new {
        return Ok(());
    }
    store.put(&union)?;
    let stale = Record {
        objects: old
            .objects
            .iter()
            .filter(|o| !new.objects.contains(o))
            .cloned()
            .collect(),
        holds: old
            .holds
            .iter()
            .filter(|h| !new.holds.contains(h))
            .cloned()
            .collect(),
        ..old.clone()
    };
    log::info!(
        "re-ADD: removing {} object(s) and {} hold(s) the new plan does not have",
        stale.objects.len(),
        stale.holds.len()
    );
    teardown(store, kernel, &stale)
}
