//! Shard notices applied to snapshots: a client that hears a [`ShardNotice`] updates that
//! one shard's placement at once, without a discovery round, and a discovery round that
//! read an island before a notice it has already applied must not undo it.
//!
//! Ordering: a notice is applied only when its generation is above every generation the
//! snapshot knows for the shard ([`Snapshot::shard_gen`], from discovery or from notices
//! applied earlier); an older or repeated one tells nothing new and is ignored. Notices
//! arrive on one connection per island, in commit order per island but in no particular
//! order between islands, and discovery rounds interleave with them; the generations make
//! every order end in the same placement.
//!
//! An activation also switches the shard's other copies off in the snapshot: atoll
//! activates a copy only once the others are off (a move switches its source off first;
//! `shard activate` refuses while another copy is active), and the destination's notice
//! may arrive before the source's. A duplicate made by hand, which a notice cannot see,
//! shows up again at the next discovery round (whose generations are then not below the
//! notice's).

use super::{active_of, ShardCopy, Snapshot, SnapshotProblem};
use crate::shard::ShardNo;
use crate::shard_notice::ShardNotice;
use std::collections::BTreeMap;

/// What became of one notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeOutcome {
    /// Newer than anything the snapshot knew of the shard: the placement was updated.
    Applied,
    /// Not newer than what the snapshot knows of the shard (an old or repeated notice).
    Stale,
    /// The notice names an island the snapshot (the config) does not have.
    UnknownIsland,
}

impl Snapshot {
    /// Applies one notice to this snapshot (see the module docs for when it is ignored).
    /// Readers never see a snapshot change: apply notices to a clone, then swap it in.
    pub fn apply_notice(&mut self, n: &ShardNotice) -> NoticeOutcome {
        if self.island(n.island).is_none() {
            return NoticeOutcome::UnknownIsland;
        }
        if n.gen <= self.shard_gen(n.shard) {
            return NoticeOutcome::Stale;
        }
        let copies = self.shards.entry(n.shard).or_default();
        match copies.iter_mut().find(|c| c.island == n.island) {
            Some(c) => {
                c.active = n.active;
                c.gen = n.gen;
            }
            None => copies.push(ShardCopy {
                island: n.island,
                active: n.active,
                size_bytes: None,
                gen: n.gen,
                rows_estimate: None,
                weight: None,
            }),
        }
        if n.active {
            for c in copies.iter_mut().filter(|c| c.island != n.island) {
                c.active = false;
            }
        }
        self.place(n.shard);
        NoticeOutcome::Applied
    }

    /// Recomputes where `shard` is active (and whether it is in conflict) from its copies.
    fn place(&mut self, shard: ShardNo) {
        let placement = self.shards.get(&shard).map_or(Ok(None), |c| active_of(c));
        self.problems.retain(
            |p| !matches!(p, SnapshotProblem::DuplicateActive { shard: s, .. } if *s == shard),
        );
        let slot = &mut self.active[shard.get() as usize];
        match placement {
            Ok(one) => *slot = one,
            Err(islands) => {
                *slot = None;
                self.problems
                    .push(SnapshotProblem::DuplicateActive { shard, islands });
            }
        }
    }

    /// A copy of this snapshot with `n` applied; `None` when `n` tells nothing new.
    pub fn with_shard_notice(&self, n: &ShardNotice) -> Option<Snapshot> {
        let mut s = self.clone();
        (s.apply_notice(n) == NoticeOutcome::Applied).then_some(s)
    }
}

/// How many notices of a batch were applied, and how many ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoticeCounts {
    /// Notices that updated the snapshot.
    pub applied: u64,
    /// Notices that were stale or named an unknown island.
    pub ignored: u64,
}

/// The notices applied since the last discovery round that had seen them, so each new
/// round's snapshot gets them again until a round has read rows at least as new
/// ([`NoticeLog::merge`]).
#[derive(Debug, Clone, Default)]
pub struct NoticeLog {
    /// Per shard, in generation order.
    pending: BTreeMap<ShardNo, Vec<ShardNotice>>,
}

impl NoticeLog {
    /// Applies `notices`, in order, to `current`: the updated snapshot when at least one
    /// was new (one clone for the whole batch), and the counts. Applied ones are kept for
    /// [`NoticeLog::merge`].
    pub fn apply(
        &mut self,
        current: &Snapshot,
        notices: &[ShardNotice],
    ) -> (Option<Snapshot>, NoticeCounts) {
        let mut counts = NoticeCounts::default();
        let mut next: Option<Snapshot> = None;
        for n in notices {
            let outcome = match next.as_mut() {
                Some(s) => s.apply_notice(n),
                None => {
                    let mut s = current.clone();
                    let o = s.apply_notice(n);
                    if o == NoticeOutcome::Applied {
                        next = Some(s);
                    }
                    o
                }
            };
            if outcome == NoticeOutcome::Applied {
                counts.applied += 1;
                let kept = self.pending.entry(n.shard).or_default();
                // Applied means newer than everything known, so it goes last.
                kept.push(*n);
            } else {
                counts.ignored += 1;
            }
        }
        (next, counts)
    }

    /// A discovery round's snapshot with the kept notices it had not seen re-applied, in
    /// generation order; notices it had seen (its generation for the shard is not below
    /// theirs) are forgotten after this round.
    ///
    /// A round reads the islands one by one, so it can read a move's source before the
    /// switch and its destination after the activation: both active. An activation the
    /// round saw on its island (same generation) therefore switches the round's older
    /// active copies off, once; a real duplicate shows at the next round.
    pub fn merge(&mut self, mut discovered: Snapshot) -> Snapshot {
        let mut forget = Vec::new();
        for (shard, kept) in &mut self.pending {
            let seen = discovered.shard_gen(*shard);
            for n in kept.iter() {
                if n.gen > discovered.shard_gen(*shard) {
                    discovered.apply_notice(n);
                } else if n.active {
                    discovered.confirm_activation(n);
                }
            }
            kept.retain(|n| n.gen > seen && discovered.island(n.island).is_some());
            if kept.is_empty() {
                forget.push(*shard);
            }
        }
        for shard in forget {
            self.pending.remove(&shard);
        }
        discovered
    }

    /// How many notices are kept.
    pub fn len(&self) -> usize {
        self.pending.values().map(Vec::len).sum()
    }

    /// Whether no notice is kept.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

impl Snapshot {
    /// `n` is an activation this snapshot has read on its island (same generation): its
    /// other active copies read at older generations were read before they were
    /// switched off (see [`NoticeLog::merge`]).
    fn confirm_activation(&mut self, n: &ShardNotice) {
        let Some(copies) = self.shards.get_mut(&n.shard) else {
            return;
        };
        let confirmed = copies
            .iter()
            .any(|c| c.island == n.island && c.active && c.gen == n.gen);
        let older = |c: &ShardCopy| c.island != n.island && c.active && c.gen < n.gen;
        if !confirmed || !copies.iter().any(older) {
            return;
        }
        for c in copies.iter_mut().filter(|c| older(c)) {
            c.active = false;
        }
        self.place(n.shard);
    }
}

#[cfg(test)]
#[path = "notice_tests.rs"]
mod tests;
