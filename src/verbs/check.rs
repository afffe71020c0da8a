//! CHECK: compare what the record says this attachment owns with the kernel,
//! and name every object that is missing or has drifted, and every imposter
//! in the tables it uses (a route where none is recorded, someone else's
//! rule pointing at them).

use crate::cni::Env;
use crate::config::Config;
use crate::engine::{new_kernel_reusing, open_store};
use crate::error::{Error, Result, code};
use crate::kernel::Kernel;
use crate::model::{Object, Presence};
use crate::plan;
use crate::store::{GroupKey, Store};

pub fn run(config: &Config, env: &Env) -> Result<()> {
    let id = env.attachment();
    crate::logging::set_context(format!("CHECK {id} net={}", config.network));
    let store = open_store(config)?;
    let record = store.get(&id)?.ok_or_else(|| {
        Error::new(
            code::CHECK_FAILED,
            format!(
                "no gwsteer record for attachment {id} in network \"{}\" (was ADD run with this state directory?)",
                config.network
            ),
        )
    })?;
    let mut problems = Vec::new();
    let mut firewall = None;
    let mut netlink = None;
    if let Some(prev) = &config.prev_result {
        let (pod, opened, facts) = super::planning_input(config, env, prev, &mut netlink)?;
        firewall = opened;
        let want = plan::plan(config, &pod, &facts);
        // Recorded objects carry what ADD read (previous values): compare
        // them as planned. A keep route ADD found in place is not recorded.
        for obj in want.pod_objects.iter().filter(|o| {
            !record.objects.iter().any(|r| r.planned() == **o)
                && !matches!(o, Object::PodRoute { keep: true, .. })
        }) {
            problems.push(format!(
                "not recorded (config or addresses changed since ADD): {obj}"
            ));
        }
    }
    if record.objects.is_empty() && record.holds.is_empty() {
        return report(problems);
    }
    let mut kernel = new_kernel_reusing(env.netns.clone(), firewall, netlink)?;
    observe_all(kernel.as_mut(), &record.objects, &mut problems)?;
    let mut held = Vec::new();
    for key in &record.holds {
        match store.group(key)? {
            Some(group) => {
                observe_all(kernel.as_mut(), &group.objects, &mut problems)?;
                held.push(group);
            }
            None => problems.push(format!("node group {key} has no record")),
        }
    }
    // The tables this attachment's traffic uses are gwsteer's alone: a rule
    // someone else points at them, or a route where none is recorded, is
    // drift too (reconcile removes them).
    let tables = crate::engine::audit::owned_tables(&held);
    if !tables.is_empty() {
        let mut recorded = Vec::new();
        for key in store.group_keys()? {
            if let Some(g) = store_group(&store, &key)? {
                recorded.extend(g);
            }
        }
        for imposter in
            crate::engine::audit::foreign_in_tables(kernel.as_mut(), &tables, &recorded)?
        {
            problems.push(imposter.to_string());
        }
    }
    report(problems)
}

fn store_group(store: &Store, key: &GroupKey) -> Result<Option<Vec<Object>>> {
    Ok(store.group(key)?.map(|g| g.objects))
}

pub fn observe_all(
    kernel: &mut dyn Kernel,
    objects: &[Object],
    problems: &mut Vec<String>,
) -> Result<()> {
    let refs: Vec<&Object> = objects.iter().collect();
    for (obj, seen) in objects.iter().zip(kernel.observe_all(&refs)?) {
        match seen {
            Presence::Present => {}
            Presence::Missing => problems.push(format!("missing {obj}")),
            Presence::Drifted(how) => problems.push(format!("drifted {obj}: {how}")),
        }
    }
    Ok(())
}

fn report(problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        log::info!("all recorded objects present");
        return Ok(());
    }
    Err(Error::new(
        code::CHECK_FAILED,
        format!("{} problem(s): {}", problems.len(), problems.join("; ")),
    ))
}
