//! Group commit, for the SQL stores: saves that arrive while another is
//! being written share its transaction, so one lock and one flush serve
//! them all.
//!
//! The first save of a group begins the transaction and runs alone in it
//! (it holds the writer while it runs); each save that joins is marked
//! (a savepoint, or what the store undoes without one), so its failure (a
//! conflict) undoes it alone. The
//! last writer with nobody waiting behind it commits, and every save of
//! the group returns only after that commit: a failed commit fails every
//! save of the group, and none of them is stored. A store says how to
//! begin, take a savepoint, roll back to it and commit
//! ([`GroupTransaction`]); this module does the bookkeeping.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};

/// How a group's transaction failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Rolled back: nothing of it is stored.
    Failed(String),
    /// The connection broke after COMMIT was sent: whether it committed is
    /// unknown.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Unknown(String),
}

/// The store's side of a group transaction, on its writing connection.
pub(crate) trait GroupTransaction {
    /// What a failed step returns.
    type Error: std::fmt::Display;
    /// Begins the group's transaction (with whatever lock the store takes).
    /// On error no transaction is open.
    fn begin(&mut self) -> Result<(), Self::Error>;
    /// Marks the start of a joining save, to undo it alone if it fails.
    /// A store may leave the savepoint to the save itself, which knows
    /// whether it needs one (SQLite's `WriteConnection::mark`,
    /// PostgreSQL's `GroupWriter::save`): every save path must then ask.
    fn savepoint(&mut self) -> Result<(), Self::Error>;
    /// A joining save succeeded (the store may keep its savepoint until
    /// the next one, to save a round trip).
    fn release(&mut self) -> Result<(), Self::Error>;
    /// Undoes a joining save back to its savepoint; false if the
    /// transaction cannot be kept (then the whole group is rolled back).
    fn rollback_to_savepoint(&mut self) -> bool;
    /// Commits the group's transaction.
    fn commit(&mut self) -> Result<(), Failure>;
    /// Rolls the whole group's transaction back.
    fn rollback(&mut self);
    /// The group ended, committed or not (to give back a connection, or
    /// replace one left in a transaction).
    fn ended(&mut self) {}
}

/// Why a save through [`GroupCommit::save`] failed.
#[derive(Debug)]
pub(crate) enum SaveError<E> {
    /// Beginning the transaction failed: nothing was stored.
    Begin(E),
    /// This save's own statements failed: nothing of it was stored.
    /// `alone`: no other save shared its transaction.
    Own {
        error: E,
        #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
        alone: bool,
    },
    /// This save succeeded, but its group's commit failed.
    Group(Failure),
}

/// The writing connection and the group it has open.
struct Writer<T> {
    tx: T,
    /// The epoch of the open group, if one is open.
    open: Option<u64>,
    /// How many saves ran in the open group.
    saves: usize,
    /// How many saves the last group ended with (more than one: saves
    /// are running concurrently).
    last_saves: usize,
}

#[derive(Default)]
struct State {
    next_epoch: u64,
    /// Every epoch up to this one has ended.
    ended: u64,
    /// Per epoch not yet reported to all its saves: how many saves wait
    /// for it, and how it failed, if it did.
    outcomes: Outcomes,
}

/// Per epoch: how many saves wait for it, and how it failed. A few
/// entries at most, in a vector that keeps its capacity, so a save costs
/// no allocation here (a map's node per epoch did).
#[derive(Default)]
struct Outcomes(Vec<(u64, (usize, Option<Failure>))>);

impl Outcomes {
    fn entry(&mut self, epoch: u64) -> &mut (usize, Option<Failure>) {
        let at = match self.0.iter().position(|(e, _)| *e == epoch) {
            Some(at) => at,
            None => {
                self.0.push((epoch, (0, None)));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }

    fn get_mut(&mut self, epoch: u64) -> Option<&mut (usize, Option<Failure>)> {
        self.0.iter_mut().find(|(e, _)| *e == epoch).map(|(_, o)| o)
    }

    fn remove(&mut self, epoch: u64) {
        self.0.retain(|(e, _)| *e != epoch);
    }
}

/// The group-commit engine over one writing connection `T`.
pub(crate) struct GroupCommit<T> {
    writer: Mutex<Writer<T>>,
    /// Threads waiting for the writer: while there are some, a finished
    /// save leaves the transaction open for them.
    waiting: AtomicUsize,
    state: Mutex<State>,
    ended: Condvar,
    /// Whether saves may share a transaction at all.
    share: bool,
}

impl<T: GroupTransaction> GroupCommit<T> {
    /// An engine writing through `tx`; with `share` false every save
    /// commits its own transaction.
    pub(crate) fn new(tx: T, share: bool) -> Self {
        Self {
            writer: Mutex::new(Writer {
                tx,
                open: None,
                saves: 0,
                last_saves: 0,
            }),
            waiting: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
            ended: Condvar::new(),
            share,
        }
    }

    /// Runs `save` inside a group transaction and returns once its group
    /// has ended: its value if the group committed.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn save<R>(
        &self,
        save: impl FnOnce(&mut T) -> Result<R, T::Error>,
    ) -> Result<R, SaveError<T::Error>> {
        self.save_announced(|| {}, save)
    }

    /// As [`save`](Self::save), running `announce` first, once this save
    /// counts as waiting for the writer: what `announce` leaves for the
    /// writer's holder to do (a queued insert) is done in a group this
    /// save then joins, since a group is not committed while a save waits
    /// (unless by [`exclusive`](Self::exclusive) or a failure, which the
    /// store must allow for).
    pub(crate) fn save_announced<R>(
        &self,
        announce: impl FnOnce(),
        save: impl FnOnce(&mut T) -> Result<R, T::Error>,
    ) -> Result<R, SaveError<T::Error>> {
        let mut writer = self.writer(announce);
        let epoch = match writer.open {
            Some(epoch) => epoch,
            None => {
                if let Err(e) = writer.tx.begin() {
                    writer.tx.ended();
                    return Err(SaveError::Begin(e));
                }
                let epoch = {
                    let mut state = self.state();
                    state.next_epoch += 1;
                    state.next_epoch
                };
                writer.open = Some(epoch);
                writer.saves = 0;
                epoch
            }
        };
        self.state().outcomes.entry(epoch).0 += 1;
        // The opener is alone in the transaction (it holds the writer):
        // its failure rolls the whole of it back, so it needs no savepoint.
        let joining = writer.saves > 0;
        writer.saves += 1;
        let tx = &mut writer.tx;
        let result = (|| -> Result<R, T::Error> {
            if joining {
                tx.savepoint()?;
            }
            let value = save(tx)?;
            if joining {
                tx.release()?;
            }
            Ok(value)
        })();
        match result {
            Ok(value) => {
                self.commit_unless_awaited(&mut writer);
                drop(writer);
                self.wait_for(epoch).map_err(SaveError::Group)?;
                Ok(value)
            }
            Err(error) => {
                let undone = joining && writer.tx.rollback_to_savepoint();
                let alone = self.state().outcomes.get_mut(epoch).map_or(1, |o| o.0) == 1;
                if undone {
                    self.commit_unless_awaited(&mut writer);
                } else {
                    writer.tx.rollback();
                    self.end(&mut writer, epoch, Some(Failure::Failed(error.to_string())));
                }
                drop(writer);
                self.leave(epoch);
                Err(SaveError::Own { error, alone })
            }
        }
    }

    /// Runs `f` on the writing connection with no group open (the open one
    /// is committed first): for work that needs a transaction of its own,
    /// or reads through the writer.
    pub(crate) fn exclusive<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut writer = self.writer(|| {});
        self.commit(&mut writer);
        f(&mut writer.tx)
    }

    /// Runs `f` on the writing connection if it is idle (not held, no
    /// group open, no save waiting), else returns None at once: for reads
    /// that gain from the writer's cache, which holds what was just
    /// written, and that must not keep a save waiting long.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn try_idle<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let mut writer = match self.writer.try_lock() {
            Ok(writer) => writer,
            // As in `writer`: a panic left at most an open group.
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        if writer.open.is_some() {
            return None;
        }
        Some(f(&mut writer.tx))
    }

    /// Whether a save now is likely to be alone in its group: the writer
    /// is free, no group is open, nobody waits for it, and the last group
    /// held one save. Only a hint (another save may come first): for work
    /// that pays only when saves share a group.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn likely_alone(&self) -> bool {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return false;
        }
        match self.writer.try_lock() {
            Ok(writer) => writer.open.is_none() && writer.last_saves <= 1,
            Err(_) => false,
        }
    }

    /// How many saves wait for the writer (for tests that make a save
    /// join a group).
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// The writer, counted as waiting (from before `announce`) while it
    /// waits.
    fn writer(&self, announce: impl FnOnce()) -> MutexGuard<'_, Writer<T>> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        announce();
        // A panic while the lock was held left at most an open group,
        // which the next holder commits or rolls back.
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        writer
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits the open group unless another save waits to join it.
    fn commit_unless_awaited(&self, writer: &mut Writer<T>) {
        if !self.share {
            return self.commit(writer);
        }
        // Saves of the last group, woken by its commit, are on their way
        // back with their next save: one yield lets them join this group
        // rather than each open a group (and pay a flush) of its own. A
        // lone writer's groups have one save, so it never yields.
        if writer.last_saves > 1 && self.waiting.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        if self.waiting.load(Ordering::SeqCst) == 0 {
            self.commit(writer);
        }
    }

    fn commit(&self, writer: &mut Writer<T>) {
        let Some(epoch) = writer.open else {
            return;
        };
        let failure = writer.tx.commit().err();
        self.end(writer, epoch, failure);
    }

    /// Records how group `epoch` ended and wakes its saves.
    fn end(&self, writer: &mut Writer<T>, epoch: u64, failure: Option<Failure>) {
        writer.open = None;
        writer.last_saves = writer.saves;
        writer.saves = 0;
        writer.tx.ended();
        let mut state = self.state();
        let outcome = state.outcomes.entry(epoch);
        outcome.1 = failure;
        if outcome.0 == 0 {
            state.outcomes.remove(epoch);
        }
        state.ended = epoch;
        drop(state);
        self.ended.notify_all();
    }

    /// A save leaves its group with its own error.
    fn leave(&self, epoch: u64) {
        let mut state = self.state();
        let ended = state.ended >= epoch;
        if let Some(outcome) = state.outcomes.get_mut(epoch) {
            outcome.0 = outcome.0.saturating_sub(1);
            if outcome.0 == 0 && ended {
                state.outcomes.remove(epoch);
            }
        }
    }

    /// Waits until group `epoch` has ended: Ok if it committed.
    fn wait_for(&self, epoch: u64) -> Result<(), Failure> {
        let state = self.state();
        let mut state = self
            .ended
            .wait_while(state, |s| s.ended < epoch)
            .unwrap_or_else(|e| e.into_inner());
        let outcome = state.outcomes.entry(epoch);
        let failure = outcome.1.clone();
        outcome.0 = outcome.0.saturating_sub(1);
        if outcome.0 == 0 {
            state.outcomes.remove(epoch);
        }
        failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A transaction that logs what it is told, over a "table" of values.
    #[derive(Default)]
    struct Log {
        steps: Vec<String>,
        committed: Vec<u32>,
        open: Vec<u32>,
        mark: usize,
        fail_commit: bool,
    }

    impl GroupTransaction for Log {
        type Error = String;
        fn begin(&mut self) -> Result<(), String> {
            self.steps.push("begin".into());
            Ok(())
        }
        fn savepoint(&mut self) -> Result<(), String> {
            self.steps.push("savepoint".into());
            self.mark = self.open.len();
            Ok(())
        }
        fn release(&mut self) -> Result<(), String> {
            Ok(())
        }
        fn rollback_to_savepoint(&mut self) -> bool {
            self.steps.push("rollback to".into());
            self.open.truncate(self.mark);
            true
        }
        fn commit(&mut self) -> Result<(), Failure> {
            self.steps.push("commit".into());
            if self.fail_commit {
                self.open.clear();
                return Err(Failure::Failed("disk full".into()));
            }
            self.committed.append(&mut self.open);
            Ok(())
        }
        fn rollback(&mut self) {
            self.steps.push("rollback".into());
            self.open.clear();
        }
    }

    fn insert(value: u32) -> impl FnOnce(&mut Log) -> Result<u32, String> {
        move |log: &mut Log| {
            if log.committed.contains(&value) || log.open.contains(&value) {
                return Err(format!("{value} exists"));
            }
            log.open.push(value);
            Ok(value)
        }
    }

    #[test]
    fn a_lone_save_begins_and_commits_without_a_savepoint() {
        let engine = GroupCommit::new(Log::default(), true);
        assert_eq!(engine.save(insert(1)).ok(), Some(1));
        engine.exclusive(|log| {
            assert_eq!(log.steps, ["begin", "commit"]);
            assert_eq!(log.committed, [1]);
        });
    }

    #[test]
    fn a_failed_lone_save_rolls_back_and_stores_nothing() {
        let engine = GroupCommit::new(Log::default(), true);
        engine.save(insert(1)).ok();
        match engine.save(insert(1)) {
            Err(SaveError::Own { error, alone }) => {
                assert_eq!(error, "1 exists");
                assert!(alone);
            }
            other => panic!("{other:?}"),
        }
        engine.exclusive(|log| assert_eq!(log.committed, [1]));
    }

    #[test]
    fn concurrent_saves_share_transactions_and_a_conflict_fails_alone() {
        let engine = Arc::new(GroupCommit::new(Log::default(), true));
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u32)
                .map(|t| {
                    let engine = engine.clone();
                    // Thread 7 conflicts with thread 0's first value.
                    s.spawn(move || {
                        (0..50u32)
                            .map(|i| {
                                engine
                                    .save(insert(if t == 7 && i == 0 { 0 } else { t * 100 + i }))
                                    .is_ok()
                            })
                            .filter(|ok| *ok)
                            .count()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let stored: usize = results.iter().sum();
        engine.exclusive(|log| {
            let mut committed = log.committed.clone();
            committed.sort_unstable();
            committed.dedup();
            assert_eq!(committed.len(), log.committed.len(), "no value twice");
            assert_eq!(committed.len(), stored, "every acknowledged save is stored");
            assert!(committed.len() >= 399, "{}", committed.len());
            let commits = log.steps.iter().filter(|s| *s == "commit").count();
            assert!(commits <= stored, "{commits} commits for {stored} saves");
        });
    }

    #[test]
    fn the_idle_writer_is_lent_only_when_nothing_holds_it() {
        let engine = GroupCommit::new(Log::default(), true);
        assert_eq!(engine.try_idle(|log| log.committed.len()), Some(0));
        // Held by a save (its group open): not lent, and no wait.
        let lent = engine.save(|log| {
            log.open.push(1);
            Ok::<_, String>(engine.try_idle(|_| ()))
        });
        assert!(matches!(lent, Ok(None)), "{lent:?}");
        assert_eq!(engine.exclusive(|_| engine.try_idle(|_| ())), None);
        assert_eq!(engine.try_idle(|log| log.committed.clone()), Some(vec![1]));
    }

    #[test]
    fn a_save_is_likely_alone_only_when_the_writer_is_free_and_the_last_group_was_one() {
        let engine = GroupCommit::new(Log::default(), true);
        assert!(engine.likely_alone(), "a new engine");
        // A second save arrives while the first holds the writer: both
        // share the group.
        std::thread::scope(|s| {
            let first = engine.save(|log| {
                log.open.push(1);
                let alone = engine.likely_alone();
                let second = s.spawn(|| engine.save(insert(2)).ok());
                while engine.waiting.load(Ordering::SeqCst) == 0 {
                    std::thread::yield_now();
                }
                Ok::<_, String>((alone, second))
            });
            let (alone, second) = first.expect("first");
            assert!(!alone, "not while a save holds the writer");
            assert_eq!(second.join().expect("second"), Some(2));
        });
        engine.exclusive(|log| assert_eq!(log.committed, [1, 2]));
        assert!(!engine.likely_alone(), "the last group held two saves");
        assert_eq!(engine.save(insert(3)).ok(), Some(3));
        assert!(engine.likely_alone(), "the last group held one save");
    }

    #[test]
    fn a_failed_commit_fails_the_save() {
        let engine = GroupCommit::new(
            Log {
                fail_commit: true,
                ..Log::default()
            },
            true,
        );
        assert!(matches!(
            engine.save(insert(1)),
            Err(SaveError::Group(Failure::Failed(_)))
        ));
        engine.exclusive(|log| assert!(log.committed.is_empty()));
    }
}
