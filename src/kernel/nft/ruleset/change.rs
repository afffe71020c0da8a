//! A plan as changes to its table: made whatever of it exists, created
//! where nothing does, removed ([`Plan::transaction`], [`Plan::creation`],
//! [`Plan::removal`]).

use std::collections::BTreeSet;

use super::*;

/// One change of a transaction on a plan's table (nft's verbs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `add table` (an existing one stays as it is).
    AddTable,
    /// `create table`: the transaction fails (`EEXIST`) if it exists.
    CreateTable,
    DeleteTable,
    /// `add chain` without a hook: the chain exists afterwards, so the
    /// flush and delete that follow cannot fail on a missing one.
    TouchChain(String),
    /// `flush chain`: its rules go (a chain is deleted only when empty).
    FlushChain(String),
    DeleteChain(String),
    /// `add set` with the set's flags and, for a constant set, elements;
    /// `create set` (fails if it exists) when `new`.
    AddSet {
        set: SetDef,
        new: bool,
    },
    DeleteSet(String),
    /// `add chain` as a base chain with policy accept; `create chain`
    /// (fails if it exists) when `new`.
    AddChain {
        name: String,
        kind: &'static str,
        hook: &'static str,
        prio: i64,
        new: bool,
    },
    /// `add rule`, carrying the plan's comment.
    AddRule {
        chain: String,
        rule: Vec<Stmt>,
    },
}

/// Changes to one table, applied all or nothing.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub table: String,
    /// The comment of every rule added.
    pub comment: String,
    /// Member sets get `flags timeout`.
    pub timeouts: bool,
    pub changes: Vec<Change>,
}

impl Plan {
    /// One transaction that makes the plan real, whatever of it exists:
    /// the owner's chains are deleted and re-made (touched first, so the
    /// delete never fails on a chain that is not there), stale and constant
    /// sets are deleted and re-made, member sets are kept — with their
    /// elements — unless they have the wrong shape. `timeouts`: member sets
    /// get `flags timeout` (the kernel can update an element's timeout).
    pub fn transaction(&self, view: Option<&TableView>, timeouts: bool) -> Transaction {
        let mut changes = vec![Change::AddTable];
        // What the listing shows absent is created, not re-made: no delete
        // (whose commit leaves the kernel objects to free, and the socket's
        // close a grace period to wait for). Created exclusively: should it
        // have appeared since, the transaction fails (`EEXIST`) instead of
        // doubling rules, and the caller makes it without a view.
        let absent = |name: &str, sets: bool| {
            view.is_some_and(|v| {
                !if sets {
                    v.sets.contains_key(name)
                } else {
                    v.chains.contains_key(name)
                }
            })
        };
        for name in self.owned_chains.iter().filter(|c| !absent(c, false)) {
            changes.push(Change::TouchChain(name.clone()));
            changes.push(Change::FlushChain(name.clone()));
            changes.push(Change::DeleteChain(name.clone()));
        }
        // Member sets kept as they are: an `add` of today's shape would fail
        // on one of the earlier (flag-less) shape.
        let mut kept: BTreeSet<&str> = BTreeSet::new();
        for name in &self.owned_sets {
            let existing = view.and_then(|v| v.sets.get(name));
            let Some(shape) = owned_set_shape(name) else {
                continue;
            };
            // Stale (another scope's, another spec's): goes, elements and all.
            if !self.sets.iter().any(|s| s.name == *name) {
                if existing.is_some() {
                    changes.push(Change::DeleteSet(name.clone()));
                } else if view.is_none() && shape.constant.is_some() {
                    // Unknown state: a constant set has one shape; make sure
                    // it goes. (A member set's shape may vary: it goes with
                    // the next repair planned from a listing, which `compare`
                    // asks for by reporting it stale.)
                    changes.push(Change::AddSet {
                        set: shape,
                        new: false,
                    });
                    changes.push(Change::DeleteSet(name.clone()));
                }
                continue;
            }
            let member = shape.constant.is_none();
            let fits = |e: &SetView| {
                e.key == key_type(shape.family)
                    && if member && !shape.subnets {
                        member_flags_fit(&e.flags)
                    } else {
                        e.flags == set_flags(&shape, timeouts)
                    }
            };
            match existing {
                // A member set of the right shape keeps its elements.
                Some(e) if member && fits(e) => {
                    kept.insert(name);
                }
                // Wrong shape: an `add` would fail on it; a plain delete.
                Some(e) if !fits(e) => changes.push(Change::DeleteSet(name.clone())),
                // Constant sets are re-made, as chains are: an empty one
                // added first, so the delete cannot fail on a set that is
                // not there (whatever the listing said).
                _ if !member && !absent(name, true) => {
                    changes.push(Change::AddSet {
                        set: shape,
                        new: false,
                    });
                    changes.push(Change::DeleteSet(name.clone()));
                }
                _ => {}
            }
        }
        for set in self.sets.iter().filter(|s| !kept.contains(s.name.as_str())) {
            changes.push(Change::AddSet {
                set: set.clone(),
                new: absent(&set.name, true),
            });
        }
        self.add_chains(&mut changes, |name| absent(name, false));
        self.transact(changes, timeouts)
    }

    /// The plan's chains and their rules; `new` says which are created.
    fn add_chains(&self, changes: &mut Vec<Change>, new: impl Fn(&str) -> bool) {
        for chain in &self.chains {
            changes.push(Change::AddChain {
                name: chain.name.clone(),
                kind: chain.kind,
                hook: chain.hook,
                prio: chain.prio,
                new: new(&chain.name),
            });
            for rule in &chain.rules {
                changes.push(Change::AddRule {
                    chain: chain.name.clone(),
                    rule: rule.clone(),
                });
            }
        }
    }

    /// The transaction that makes the plan in a table that does not exist
    /// (as a rule dump just said): nothing to delete, so its commit leaves
    /// the kernel nothing to free — and closing the socket nothing to wait
    /// for (see `messages::ElemOp::Expire`). It fails with `EEXIST` if the
    /// table appeared meanwhile; then [`Plan::transaction`] is the way.
    pub fn creation(&self, timeouts: bool) -> Transaction {
        let mut changes = vec![Change::CreateTable];
        changes.extend(self.sets.iter().map(|set| Change::AddSet {
            set: set.clone(),
            new: true,
        }));
        self.add_chains(&mut changes, |_| true);
        self.transact(changes, timeouts)
    }

    /// One transaction removing everything this owner made (any spec), or
    /// the whole table when nothing else is left in it; `None` when there
    /// is nothing to remove.
    pub fn removal(&self, view: &TableView) -> Option<Transaction> {
        let chains: Vec<&String> = self
            .owned_chains
            .iter()
            .filter(|c| view.chains.contains_key(*c))
            .collect();
        let sets: Vec<&String> = self
            .owned_sets
            .iter()
            .filter(|s| view.sets.contains_key(*s))
            .collect();
        if chains.is_empty() && sets.is_empty() {
            return None;
        }
        let others = view
            .chains
            .keys()
            .filter(|c| !self.owned_chains.contains(c))
            .count()
            + view
                .sets
                .keys()
                .filter(|s| !self.owned_sets.contains(s))
                .count();
        let changes = if others == 0 {
            vec![Change::DeleteTable]
        } else {
            let mut changes = Vec::new();
            for name in chains {
                changes.push(Change::FlushChain(name.clone()));
                changes.push(Change::DeleteChain(name.clone()));
            }
            for name in sets {
                changes.push(Change::DeleteSet(name.clone()));
            }
            changes
        };
        Some(self.transact(changes, false))
    }

    fn transact(&self, changes: Vec<Change>, timeouts: bool) -> Transaction {
        Transaction {
            table: self.table.clone(),
            comment: self.comment.clone(),
            timeouts,
            changes,
        }
    }
}

/// The shape (family, member or constant) a set of gwsteer's has, from its
/// name (`p_v4`, `p_to_v6`, `p_ex_v4`…), with no elements.
fn owned_set_shape(name: &str) -> Option<SetDef> {
    let family = match name.rsplit('_').next()? {
        "v4" => Family::V4,
        "v6" => Family::V6,
        _ => return None,
    };
    let constant = name.contains("_to_") || name.contains("_ex_");
    Some(SetDef {
        name: name.to_string(),
        family,
        constant: constant.then(Vec::new),
        subnets: name.contains("_net_"),
    })
}

/// A set's flags by nft's names. A member set has `flags timeout` where
/// the kernel can update an element's timeout (`timeouts`): a pod's element
/// then goes by expiring, not by a deleting transaction (see
/// `messages::ElemOp::Expire`).
pub fn set_flags(set: &SetDef, timeouts: bool) -> Vec<String> {
    match &set.constant {
        Some(_) => vec!["constant".into(), "interval".into()],
        None if set.subnets => vec!["interval".into()],
        None if timeouts => vec!["timeout".into()],
        None => Vec::new(),
    }
}

/// Flags a member set may have and keep its elements: none (made by a
/// version before expiring removal, or on a kernel without it) or
/// `timeout`. Either works: removal falls back to a delete without it.
fn member_flags_fit(flags: &[String]) -> bool {
    flags.is_empty() || flags == ["timeout"]
}
