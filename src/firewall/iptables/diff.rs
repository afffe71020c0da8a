//! Comparing a saved table with what an object wants: the lines of the
//! restore script that make it so, or the problems `observe` reports. Pure;
//! no I/O.

use super::rules::{CHAIN_PREFIX, COMMENT_PREFIX, ChainSpec, PolicyFamily, PolicyNames};
use super::xtables::{Rule, Table, join_args};

/// Is this rule gwsteer's (any network)?
pub fn is_ours(rule: &Rule) -> bool {
    rule.comment()
        .is_some_and(|c| c.starts_with(COMMENT_PREFIX))
}

fn is_our_chain(chain: &str) -> bool {
    chain.starts_with(CHAIN_PREFIX)
}

/// One `*table … COMMIT` transaction.
pub fn script(table: &str, lines: &[String]) -> String {
    let mut s = format!("*{table}\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str("COMMIT\n");
    s
}

fn delete(chain: &str, args: &[String]) -> String {
    format!("-D {chain} {}", join_args(args))
}

fn insert_first(chain: &str, args: &[String]) -> String {
    format!("-I {chain} 1 {}", join_args(args))
}

fn current_rules(table: &Table, chain: &str) -> Vec<Vec<String>> {
    table.chain_rules(chain).map(|r| r.args.clone()).collect()
}

/// The policy's jumps to its chains, wherever they are (rules outside
/// gwsteer's chains with the policy's comment and one of its chains as
/// target), in any form.
fn jumps<'a>(table: &'a Table, names: &'a PolicyNames) -> impl Iterator<Item = &'a Rule> + 'a {
    table.rules.iter().filter(move |r| {
        !is_our_chain(&r.chain)
            && r.comment() == Some(names.comment.as_str())
            && r.target().is_some_and(|t| names.chains().contains(&t))
    })
}

/// Is `rule` exactly the jump `chain` wants?
fn is_jump_of(rule: &Rule, chain: &ChainSpec) -> bool {
    rule.chain == chain.hook && rule.args == chain.jump
}

/// Lines that turn `table` (mangle) into what one family of a policy
/// wants: chains rewritten when their rules differ (declaring an existing
/// chain in a `--noflush` restore flushes it, atomically with the refill),
/// exactly one jump per chain, first in its hook, nothing left of chains
/// or jumps the policy no longer has.
pub fn policy_changes(table: &Table, want: &PolicyFamily, names: &PolicyNames) -> Vec<String> {
    let mut lines = Vec::new();
    for chain in &want.chains {
        if !table.has_chain(&chain.name) || current_rules(table, &chain.name) != chain.rules {
            lines.push(format!(":{} - [0:0]", chain.name));
            for rule in &chain.rules {
                lines.push(format!("-A {} {}", chain.name, join_args(rule)));
            }
        }
    }
    let found: Vec<&Rule> = jumps(table, names).collect();
    for chain in &want.chains {
        let n = found.iter().filter(|r| is_jump_of(r, chain)).count();
        if n == 0 {
            lines.push(insert_first(chain.hook, &chain.jump));
        }
        for _ in 1..n.max(1) {
            lines.push(delete(chain.hook, &chain.jump));
        }
    }
    for r in &found {
        if !want.chains.iter().any(|c| is_jump_of(r, c)) {
            lines.push(delete(&r.chain, &r.args));
        }
    }
    for stale in names.chains() {
        if table.has_chain(stale) && !want.chains.iter().any(|w| w.name == stale) {
            lines.push(format!("-F {stale}"));
            lines.push(format!("-X {stale}"));
        }
    }
    lines
}

/// Lines that remove a policy's jumps and chains from `table`.
pub fn policy_removal(table: &Table, names: &PolicyNames) -> Vec<String> {
    let mut lines: Vec<String> = jumps(table, names)
        .map(|r| delete(&r.chain, &r.args))
        .collect();
    for chain in names.chains() {
        if table.has_chain(chain) {
            lines.push(format!("-F {chain}"));
            lines.push(format!("-X {chain}"));
        }
    }
    lines
}

/// What differs between `table` and one family of a policy; and whether any
/// of it (chain or jump) is there at all.
pub fn policy_problems(
    table: &Table,
    want: &PolicyFamily,
    names: &PolicyNames,
    label: &str,
) -> (Vec<String>, bool) {
    let mut problems = Vec::new();
    let mut any = false;
    let found: Vec<&Rule> = jumps(table, names).collect();
    for chain in &want.chains {
        chain_problems(table, chain, label, &mut problems, &mut any);
        let n = found.iter().filter(|r| is_jump_of(r, chain)).count();
        any |= n > 0;
        match n {
            0 => problems.push(format!(
                "{label}: jump `-A {} {}` missing",
                chain.hook,
                join_args(&chain.jump)
            )),
            1 => {}
            n => problems.push(format!(
                "{label}: {n} jumps from {} to {}",
                chain.hook, chain.name
            )),
        }
    }
    for r in &found {
        if !want.chains.iter().any(|c| is_jump_of(r, c)) {
            any = true;
            problems.push(format!("{label}: stale jump `{r}`"));
        }
    }
    for stale in names.chains() {
        if table.has_chain(stale) && !want.chains.iter().any(|w| w.name == stale) {
            any = true;
            problems.push(format!("{label}: stale chain {stale}"));
        }
    }
    (problems, any)
}

fn chain_problems(
    table: &Table,
    chain: &ChainSpec,
    label: &str,
    problems: &mut Vec<String>,
    any: &mut bool,
) {
    if !table.has_chain(&chain.name) {
        problems.push(format!("{label}: chain {} missing", chain.name));
        return;
    }
    *any = true;
    let before = problems.len();
    let have = current_rules(table, &chain.name);
    for rule in &chain.rules {
        if !have.contains(rule) {
            problems.push(format!(
                "{label}: rule `-A {} {}` missing",
                chain.name,
                join_args(rule)
            ));
        }
    }
    for rule in &have {
        if !chain.rules.contains(rule) {
            problems.push(format!(
                "{label}: unexpected rule `-A {} {}`",
                chain.name,
                join_args(rule)
            ));
        }
    }
    if problems.len() == before && have != chain.rules {
        problems.push(format!("{label}: rules of {} out of order", chain.name));
    }
}

/// Where each wanted rule stands in `chain`: the indexes it is found at,
/// and the index of the first rule that is not gwsteer's.
fn positions(table: &Table, chain: &str, rule: &[String]) -> (Vec<usize>, usize) {
    let rules: Vec<&Rule> = table.chain_rules(chain).collect();
    let first_foreign = rules
        .iter()
        .position(|r| !is_ours(r))
        .unwrap_or(rules.len());
    let at = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.args == rule)
        .map(|(i, _)| i)
        .collect();
    (at, first_foreign)
}

/// Lines that put each of `rules` in `chain` exactly once, ahead of every
/// rule that is not gwsteer's.
pub fn first_rules_changes(table: &Table, chain: &str, rules: &[Vec<String>]) -> Vec<String> {
    let mut lines = Vec::new();
    for rule in rules {
        let (at, first_foreign) = positions(table, chain, rule);
        if at.len() == 1 && at[0] < first_foreign {
            continue;
        }
        for _ in &at {
            lines.push(delete(chain, rule));
        }
        lines.push(insert_first(chain, rule));
    }
    lines
}

/// Problems with [`first_rules_changes`]' goal; and whether any rule is there.
pub fn first_rules_problems(
    table: &Table,
    chain: &str,
    rules: &[Vec<String>],
    label: &str,
) -> (Vec<String>, bool) {
    let mut problems = Vec::new();
    let mut any = false;
    for rule in rules {
        let (at, first_foreign) = positions(table, chain, rule);
        any |= !at.is_empty();
        let text = format!("-A {chain} {}", join_args(rule));
        match at.as_slice() {
            [] => problems.push(format!("{label}: rule `{text}` missing")),
            [i] if *i < first_foreign => {}
            [_] => problems.push(format!(
                "{label}: rule `{text}` is not ahead of the chain's other rules"
            )),
            many => problems.push(format!(
                "{label}: rule `{text}` is there {} times",
                many.len()
            )),
        }
    }
    (problems, any)
}

/// Lines that delete every rule in `table` for which `owned` says yes.
pub fn removal(table: &Table, owned: impl Fn(&Rule) -> bool) -> Vec<String> {
    table
        .rules
        .iter()
        .filter(|r| owned(r))
        .map(|r| delete(&r.chain, &r.args))
        .collect()
}

/// Everything gwsteer has in `table`, as restore lines, and a description
/// of each removed thing: gwsteer's rules in other chains (and jumps to
/// its chains), then its chains.
pub fn cleanup(table: &Table) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut what = Vec::new();
    for r in &table.rules {
        if !is_our_chain(&r.chain) && (is_ours(r) || r.target().is_some_and(is_our_chain)) {
            lines.push(delete(&r.chain, &r.args));
            what.push(format!("rule `{r}`"));
        }
    }
    let ours: Vec<&String> = table.chains.iter().filter(|c| is_our_chain(c)).collect();
    for c in &ours {
        lines.push(format!("-F {c}"));
    }
    for c in &ours {
        lines.push(format!("-X {c}"));
        what.push(format!("chain {c}"));
    }
    (lines, what)
}

#[cfg(test)]
mod tests {
    use super::super::rules::{PREROUTING, policy_family};
    use super::*;
    use crate::firewall::{FwPolicy, Marking};
    use crate::objects::Family;

    fn mark_policy() -> FwPolicy {
        FwPolicy {
            network: "net".into(),
            policy: "pol".into(),
            mark: 0x14,
            mask: 0xff,
            marking: Marking::Mark {
                egress_to: vec![],
                exclude: vec![],
            },
        }
    }

    fn table(rules: &[(&str, Vec<String>)], chains: &[&str]) -> Table {
        Table {
            name: "mangle".into(),
            chains: chains.iter().map(|c| c.to_string()).collect(),
            rules: rules
                .iter()
                .map(|(c, a)| Rule {
                    chain: c.to_string(),
                    args: a.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn empty_table_gets_chain_rules_and_one_jump() {
        let names = PolicyNames::new("net", "pol");
        let want = policy_family(&mark_policy(), &names, Family::V4);
        let lines = policy_changes(&table(&[], &["PREROUTING"]), &want, &names);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0], format!(":{} - [0:0]", names.chain));
        assert!(lines[1].starts_with(&format!("-A {} -m set", names.chain)));
        assert_eq!(
            lines[2],
            format!(
                "-I PREROUTING 1 -m set --match-set {} src -m comment --comment gwsteer:net/pol -j {}",
                names.member_set(Family::V4),
                names.chain
            )
        );
    }

    #[test]
    fn complete_policy_needs_no_lines_and_has_no_problems() {
        let names = PolicyNames::new("net", "pol");
        let want = policy_family(&mark_policy(), &names, Family::V4);
        let t = table(
            &[
                (PREROUTING, want.chains[0].jump.clone()),
                (&names.chain, want.chains[0].rules[0].clone()),
            ],
            &["PREROUTING", &names.chain],
        );
        assert!(policy_changes(&t, &want, &names).is_empty());
        assert_eq!(policy_problems(&t, &want, &names, "x"), (vec![], true));
    }

    #[test]
    fn duplicate_jumps_are_deleted_and_reported() {
        let names = PolicyNames::new("net", "pol");
        let want = policy_family(&mark_policy(), &names, Family::V4);
        let t = table(
            &[
                (PREROUTING, want.chains[0].jump.clone()),
                (PREROUTING, want.chains[0].jump.clone()),
                (&names.chain, want.chains[0].rules[0].clone()),
            ],
            &["PREROUTING", &names.chain],
        );
        assert_eq!(
            policy_changes(&t, &want, &names),
            vec![format!("-D PREROUTING {}", join_args(&want.chains[0].jump))]
        );
        let (problems, _) = policy_problems(&t, &want, &names, "x");
        assert_eq!(
            problems,
            vec![format!("x: 2 jumps from PREROUTING to {}", names.chain)]
        );
    }

    #[test]
    fn first_rules_move_ahead_of_foreign_rules() {
        let ours = vec![
            "-s".to_string(),
            "10.0.0.0/8".into(),
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            "gwsteer:n".into(),
            "-j".into(),
            "RETURN".into(),
        ];
        let foreign = vec!["-j".to_string(), "MASQUERADE".into()];
        let t = table(&[("X", foreign.clone()), ("X", ours.clone())], &["X"]);
        let lines = first_rules_changes(&t, "X", std::slice::from_ref(&ours));
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("-D X -s 10.0.0.0/8"));
        assert!(lines[1].starts_with("-I X 1 -s 10.0.0.0/8"));
        let t = table(&[("X", ours.clone()), ("X", foreign)], &["X"]);
        assert!(first_rules_changes(&t, "X", &[ours]).is_empty());
    }

    #[test]
    fn cleanup_takes_only_gwsteers() {
        let t = Table::parse(
            "mangle",
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:GWS-00000001 - [0:0]\n:OTHER - [0:0]\n\
             -A PREROUTING -m comment --comment \"gwsteer:a/b\" -j GWS-00000001\n\
             -A PREROUTING -m comment --comment \"someone\" -j OTHER\n\
             -A GWS-00000001 -j MARK --set-xmark 0x1/0x1\n\
             -A OTHER -m comment --comment \"gwsteer:x\" -j RETURN\nCOMMIT\n",
        );
        let (lines, what) = cleanup(&t);
        assert_eq!(
            lines,
            vec![
                "-D PREROUTING -m comment --comment gwsteer:a/b -j GWS-00000001",
                "-D OTHER -m comment --comment gwsteer:x -j RETURN",
                "-F GWS-00000001",
                "-X GWS-00000001",
            ]
        );
        assert_eq!(what.len(), 3);
    }
}
