//! The plan of the pod side of a `connmark` policy: a table in the pod's
//! namespace, made, checked and removed like the node's.

use super::*;

/// The pod side of a `connmark` policy: a table of its own in the pod's
/// namespace per policy and interface (`gwsteer-<policy>-<ifname>`). New
/// connections arriving on `ifname` get `mark` (under `mask`) in conntrack;
/// the pod's own packets of a connection so marked get it on the packet in
/// the route hook of `output`, so the kernel routes them again by the pod's
/// fwmark rule, whatever source address the application chose. The
/// interface name is the pod's and may hold any byte Linux allows: it goes
/// to the kernel as bytes, matched exactly.
pub fn pod_connmark_plan(policy: &str, ifname: &str, mark: u32, mask: u32) -> Result<Plan> {
    check_name("policy", policy)?;
    if mark & mask == 0 {
        return Err(Error::config(format!(
            "pod-side connmark {policy}: mark {mark:#x}/{mask:#x} sets no bits"
        )));
    }
    let mark = mark & mask;
    Ok(Plan::new(
        format!("{TABLE_PREFIX}{policy}-{ifname}"),
        format!("pod-side connmark {policy} on {ifname:?}"),
        format!("gwsteer pod-side connmark {policy}"),
        Vec::new(),
        vec![
            ChainDef {
                name: "prerouting".into(),
                kind: "filter",
                hook: "prerouting",
                prio: PRIO_MANGLE,
                rules: vec![vec![
                    Stmt::IifName(vec![ifname.to_string()]),
                    Stmt::CtStateNew,
                    Stmt::SetMark {
                        of: MarkOf::Conn,
                        mark,
                        mask,
                    },
                ]],
            },
            ChainDef {
                name: "output".into(),
                kind: "route",
                hook: "output",
                prio: PRIO_MANGLE,
                rules: vec![vec![
                    Stmt::CtMarkIs { mark, mask },
                    Stmt::SetMark {
                        of: MarkOf::Packet,
                        mark,
                        mask,
                    },
                ]],
            },
        ],
        Vec::new(),
        vec!["prerouting".into(), "output".into()],
    ))
}
