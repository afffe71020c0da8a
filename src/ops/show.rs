//! `gwsteer show`: what the state store says gwsteer owns, each object
//! observed in the kernel.

use std::path::Path;

use serde_json::{Value, json};

use crate::engine::{LOCK_WAIT, new_kernel};
use crate::error::Result;
use crate::kernel::Kernel;
use crate::model::{Object, Presence, Side};
use crate::store::{self, Store};

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

/// A record's objects, observed: node-side ones through `kernel`, pod-side
/// ones in the pod's namespace (the record's netns), or marked
/// "pod namespace gone" when it no longer exists (DEL or GC will come).
fn observed_record(
    kernel: &mut dyn Kernel,
    record: &store::Record,
    problems: &mut usize,
) -> Result<Vec<Value>> {
    let (pod, node): (Vec<Object>, Vec<Object>) = record
        .objects
        .iter()
        .cloned()
        .partition(|o| o.side() == Side::Pod);
    let mut out = observed(kernel, &node, problems)?;
    if pod.is_empty() {
        return Ok(out);
    }
    let netns = record.netns.as_ref().map(std::path::PathBuf::from);
    let seen = new_kernel(netns).and_then(|mut k| observed(k.as_mut(), &pod, problems));
    match seen {
        Ok(seen) => out.extend(seen),
        Err(e) if e.code == crate::error::code::UNKNOWN_CONTAINER => {
            out.extend(
                pod.iter()
                    .map(|o| json!({"object": o.to_string(), "state": "pod namespace gone"})),
            );
        }
        Err(e) => return Err(e),
    }
    Ok(out)
}

/// `gwsteer show [--json]`: every attachment and node group of every
/// network, each object marked present, MISSING or DRIFTED. Exit 1 when
/// anything is not as recorded (or a record was corrupt).
pub fn run(state_dir: &Path, json: bool) -> Result<i32> {
    let mut problems = 0;
    let mut networks = Vec::new();
    let mut kernel = new_kernel(None)?;
    for network in store::networks(state_dir)? {
        let store = Store::open(state_dir, &network, LOCK_WAIT)?;
        let (records, corrupt) = store.list()?;
        let mut atts = Vec::new();
        for r in &records {
            let objects = observed_record(kernel.as_mut(), r, &mut problems)?;
            atts.push(json!({
                "containerID": r.id.container_id, "ifname": r.id.ifname,
                "pod": format!("{}/{}", r.pod_namespace.as_deref().unwrap_or("-"), r.pod_name.as_deref().unwrap_or("-")),
                "holds": r.holds, "objects": objects, "notes": r.notes,
            }));
        }
        let mut groups = Vec::new();
        let mut corrupt: Vec<String> = corrupt
            .iter()
            .map(|c| c.moved_to.display().to_string())
            .collect();
        for key in store.group_keys()? {
            let objects = match store.group(&key) {
                Ok(Some(g)) => observed(kernel.as_mut(), &g.objects, &mut problems)?,
                Ok(None) => Vec::new(),
                // Set aside by the store; its objects are unknown.
                Err(e) if e.code == crate::error::code::STATE => {
                    corrupt.push(e.msg);
                    continue;
                }
                Err(e) => return Err(e),
            };
            groups.push(
                json!({"key": key, "holders": store.holders(&key)?.len(), "objects": objects}),
            );
        }
        problems += corrupt.len();
        networks.push(
            json!({"network": network, "attachments": atts, "nodeGroups": groups,
            "corrupt": corrupt}),
        );
    }
    if json {
        println!("{}", json!({"networks": networks, "problems": problems}));
    } else {
        print!("{}", show_table(&networks));
        if networks.is_empty() {
            println!("no gwsteer state under {}", state_dir.display());
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
            for note in a["notes"].as_array().into_iter().flatten() {
                notes.push(format!("network {net}, {who}: {}", s(note)));
            }
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
