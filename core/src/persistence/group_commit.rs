//! Group commit, for the SQL stores: saves that arrive while another is
//! being written share its transaction, so one lock and one flush serve
//! them all.
//!
//! The first save of a group begins the transaction and runs alone in it
//! (it holds the writer while it runs); each save that joins is marked
//! (a savepoint, or what the store undoes without one), so its failure (a
//! conflict) undoes it alone. The last writer with nobody waiting behind
//! it commits, and every save of the group returns only after that
//! commit: a failed commit fails every save of the group, and none of
//! them is stored. A store says how to begin, take a savepoint, roll back
//! to it and commit ([`GroupTransaction`]); this module does the
//! bookkeeping.
//!
//! A save may also be queued ([`GroupCommit::save_queued`]): whichever
//! save holds the writer inserts every queued one (one after another, or
//! all in one statement through the store's batch insert hook,
//! [`GroupTransaction::insert_queued_batch`]), and their owners only wait
//! for the group to end. They never take the
//! writer in turn, so a group of eight saves costs one hand-off of the
//! writer instead of eight (flat combining).

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::{self, Thread};
use std::time::Duration;

/// How a group's transaction failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitFailure {
    /// Rolled back: nothing of it is stored.
    RolledBack(String),
    /// The connection broke after COMMIT was sent: whether it committed is
    /// unknown.
    Unknown(String),
}

/// The store's side of a group transaction, on its writing connection.
pub trait GroupTransaction {
    /// What a failed step returns.
    type Error: std::fmt::Display;
    /// What a queued save hands to the writer's holder to insert (a store
    /// that queues nothing names an empty type).
    type Queued;
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
    fn commit(&mut self) -> Result<(), CommitFailure>;
    /// Rolls the whole group's transaction back.
    fn rollback(&mut self);
    /// The group ended, committed or not (to give back a connection, or
    /// replace one left in a transaction).
    fn ended(&mut self) {}
    /// Inserts a queued save in the open group, as a save's own statements
    /// (between `savepoint` and `release` when it joins); returns its
    /// notification ids.
    fn insert_queued(&mut self, queued: &Self::Queued) -> Result<Vec<u64>, Self::Error>;

    /// Whether the store implements
    /// [`insert_queued_batch`](Self::insert_queued_batch).
    const BATCH_INSERT: bool = false;

    /// The batch insert hook: inserts the queued saves of `batch` at once
    /// (in one statement, one round trip), in the open group (`joining`:
    /// saves are in it already), and returns each save's result in order.
    /// A save refused (a taken key) must leave nothing of its own in the
    /// transaction, and the others their rows. An error for the whole
    /// batch means none of it was inserted; the engine then undoes it as
    /// a failed save (`rollback_to_savepoint`, else the group). The
    /// default, `None` (and [`BATCH_INSERT`](Self::BATCH_INSERT) false):
    /// the store has no such insert, and the engine inserts the saves one
    /// by one with [`insert_queued`](Self::insert_queued).
    #[allow(clippy::type_complexity)]
    fn insert_queued_batch(
        &mut self,
        batch: &[&Self::Queued],
        joining: bool,
    ) -> Option<Result<Vec<Result<Vec<u64>, Self::Error>>, Self::Error>> {
        let _ = (batch, joining);
        None
    }
}

/// Why a save through [`GroupCommit::save`] failed.
#[derive(Debug)]
pub enum SaveFailure<E> {
    /// Beginning the transaction failed: nothing was stored.
    NotBegun(E),
    /// This save's own statements failed: nothing of it was stored.
    Refused {
        /// The store's error.
        error: E,
        /// No other save shared its transaction.
        alone: bool,
    },
    /// This save succeeded, but its group's commit failed.
    GroupFailed(CommitFailure),
}

/// Why a queued save failed when the store panicked while inserting the
/// queue.
const PANICKED: &str = "the store panicked while inserting the saves queued with this one; \
                        their group was rolled back, and nothing of this save was stored";

/// How long a queued save sleeps before it looks at the writer again on
/// its own. It is woken when its turn may have come (see
/// [`GroupCommit::kick`]); this only bounds the wait if a wake-up were
/// missed.
const RECHECK: Duration = Duration::from_millis(20);

/// What [`GroupCommit::insert_batch`] did with a batch of queued saves.
enum Batch {
    /// Every save of it is settled (inserted or refused).
    Inserted,
    /// Its group could not begin (the saves are settled or queued again).
    NotBegun,
    /// The store has no batch insert: insert them one by one.
    OneByOne,
}

/// The writing connection and the group it has open.
struct Writer<T: GroupTransaction> {
    tx: T,
    /// The epoch of the open group, if one is open.
    open: Option<u64>,
    /// The epoch given to the last group opened.
    last_epoch: u64,
    /// How many saves ran in the open group.
    saves: usize,
    /// How many saves the last group ended with (more than one: saves
    /// are running concurrently).
    last_saves: usize,
    /// The saves of the open group that wait for it to end, to wake when
    /// it does (the capacity is kept: a save costs no allocation here).
    sleepers: Vec<Thread>,
    /// The queued saves being inserted (swapped with the queue, so
    /// neither vector allocates again).
    batch: Queue<T>,
}

/// A failed group whose saves have not all been told.
struct FailedGroup {
    epoch: u64,
    /// How many of its saves are yet to read it.
    untold: usize,
    failure: CommitFailure,
}

/// A queued save: its rows, its owner, and where it stands.
struct Slot<Q, E> {
    queued: Q,
    owner: Thread,
    standing: Mutex<Standing<E>>,
}

/// The queued saves of an engine over `T`.
type Queue<T> = Vec<Arc<Slot<<T as GroupTransaction>::Queued, <T as GroupTransaction>::Error>>>;

/// Where a queued save stands.
enum Standing<E> {
    /// In the queue, not inserted.
    Pending,
    /// Inserted in group `epoch`: stored if that group commits.
    Inserted { epoch: u64, ids: Vec<u64> },
    /// Its own insert failed and was undone.
    Refused { error: E, alone: bool },
    /// Taken out of the queue because its group could not begin.
    NotBegun(E),
    /// Taken by a holder that panicked before inserting it: not stored.
    Lost,
}

impl<Q, E> Slot<Q, E> {
    fn standing(&self) -> MutexGuard<'_, Standing<E>> {
        // Set whole: one left by a panic is still whole.
        self.standing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets how it stands and wakes its owner.
    fn settle(&self, standing: Standing<E>) {
        *self.standing() = standing;
        self.owner.unpark();
    }
}

/// The group-commit engine over one writing connection `T`.
pub struct GroupCommit<T: GroupTransaction> {
    writer: Mutex<Writer<T>>,
    /// Saves waiting for the writer or queued for its holder: while there
    /// are some, a finished save leaves the transaction open for them.
    waiting: AtomicUsize,
    /// The queued saves, not yet inserted.
    queue: Mutex<Queue<T>>,
    /// Every epoch up to this one has ended. A save waits for its group
    /// by parking until this reaches it: woken saves share no lock, so
    /// they run at once rather than one after another (as they did when
    /// each took one lock back from a condition variable).
    ended: AtomicU64,
    /// The failed groups not yet reported to all their saves.
    failures: Mutex<Vec<FailedGroup>>,
    /// How many `failures` holds: a save of a group that committed reads
    /// this, not the lock.
    failing: AtomicUsize,
    /// Whether saves may share a transaction at all.
    share: bool,
}

impl<T: GroupTransaction> std::fmt::Debug for GroupCommit<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .field("share", &self.share)
            .finish_non_exhaustive()
    }
}

impl<T: GroupTransaction> GroupCommit<T> {
    /// An engine writing through `tx`; with `share` false every save
    /// commits its own transaction.
    pub fn new(tx: T, share: bool) -> Self {
        Self {
            writer: Mutex::new(Writer {
                tx,
                open: None,
                last_epoch: 0,
                saves: 0,
                last_saves: 0,
                sleepers: Vec::new(),
                batch: Vec::new(),
            }),
            waiting: AtomicUsize::new(0),
            queue: Mutex::new(Vec::new()),
            ended: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
            failing: AtomicUsize::new(0),
            share,
        }
    }

    /// Runs `save` inside a group transaction and returns once its group
    /// has ended: its value if the group committed.
    pub fn save<R>(
        &self,
        save: impl FnOnce(&mut T) -> Result<R, T::Error>,
    ) -> Result<R, SaveFailure<T::Error>> {
        let mut writer = self.writer();
        let epoch = match self.open(&mut writer) {
            Ok(epoch) => epoch,
            Err(e) => {
                self.release(writer);
                return Err(SaveFailure::NotBegun(e));
            }
        };
        let joining = writer.saves > 0;
        writer.saves += 1;
        match Self::run(&mut writer.tx, joining, save) {
            Ok(value) => {
                writer.sleepers.push(thread::current());
                if self.share && self.should_yield(&writer) {
                    thread::yield_now();
                }
                self.commit_unless_awaited(&mut writer);
                self.release(writer);
                self.wait_for(epoch).map_err(SaveFailure::GroupFailed)?;
                Ok(value)
            }
            Err(error) => {
                let alone = self.undo(&mut writer, epoch, joining, &error);
                self.commit_unless_awaited(&mut writer);
                self.release(writer);
                Err(SaveFailure::Refused { error, alone })
            }
        }
    }

    /// Queues a save of `queued` for whichever save holds the writer to
    /// insert, and returns once its group has ended: its notification ids
    /// if the group committed. A save that finds the writer free holds it
    /// and inserts every queued save, its own among them. The saves of one
    /// batch share a transaction even when `share` is off: a store that
    /// wants each save alone does not queue.
    pub fn save_queued(&self, queued: T::Queued) -> Result<Vec<u64>, SaveFailure<T::Error>> {
        let slot = Arc::new(Slot {
            queued,
            owner: thread::current(),
            standing: Mutex::new(Standing::Pending),
        });
        // Counted while queued: the holder does not commit while a save
        // waits to join its group. Uncounted when taken from the queue.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.queue().push(slot.clone());
        loop {
            let mut standing = slot.standing();
            match std::mem::replace(&mut *standing, Standing::Pending) {
                Standing::Pending => {}
                Standing::Inserted { epoch, ids } => {
                    drop(standing);
                    return self
                        .wait_for(epoch)
                        .map(|()| ids)
                        .map_err(SaveFailure::GroupFailed);
                }
                Standing::Refused { error, alone } => {
                    return Err(SaveFailure::Refused { error, alone })
                }
                Standing::NotBegun(error) => return Err(SaveFailure::NotBegun(error)),
                Standing::Lost => {
                    return Err(SaveFailure::GroupFailed(CommitFailure::RolledBack(
                        PANICKED.into(),
                    )))
                }
            }
            drop(standing);
            match self.try_writer() {
                Some(writer) => self.combine(writer),
                // Woken when inserted, refused, or when the writer is let
                // go with this save still queued.
                None => thread::park_timeout(RECHECK),
            }
        }
    }

    /// Inserts every queued save, in the open group or a new one, then
    /// commits unless another save waits to join. If the store panics
    /// meanwhile, the open group is rolled back and every save it holds
    /// or had taken is told so before the panic goes on: their owners
    /// would otherwise wait for a group nobody ends.
    fn combine(&self, mut writer: MutexGuard<'_, Writer<T>>) {
        match panic::catch_unwind(AssertUnwindSafe(|| self.insert_queue(&mut writer))) {
            Ok(true) => self.commit_unless_awaited(&mut writer),
            Ok(false) => {}
            Err(panicked) => {
                self.abandon(&mut writer);
                self.release(writer);
                panic::resume_unwind(panicked);
            }
        }
        self.release(writer);
    }

    /// Inserts the queued saves until the queue is empty; false if it
    /// stopped because a group could not begin.
    fn insert_queue(&self, writer: &mut Writer<T>) -> bool {
        let mut yielded = false;
        loop {
            std::mem::swap(&mut *self.queue(), &mut writer.batch);
            if writer.batch.is_empty() {
                // As in `save`: saves of the last group, on
                // their way back, queue during one yield.
                if !yielded && self.share && self.should_yield(writer) {
                    yielded = true;
                    thread::yield_now();
                    continue;
                }
                return true;
            }
            self.waiting.fetch_sub(writer.batch.len(), Ordering::SeqCst);
            if T::BATCH_INSERT {
                match self.insert_batch(writer) {
                    Batch::Inserted => {
                        writer.batch.clear();
                        continue;
                    }
                    Batch::NotBegun => return false,
                    Batch::OneByOne => {}
                }
            }
            for at in 0..writer.batch.len() {
                let slot = writer.batch[at].clone();
                let epoch = match self.open(writer) {
                    Ok(epoch) => epoch,
                    Err(e) => {
                        self.not_begun(writer, at, e);
                        return false;
                    }
                };
                let joining = writer.saves > 0;
                writer.saves += 1;
                match Self::run(&mut writer.tx, joining, |tx| tx.insert_queued(&slot.queued)) {
                    Ok(ids) => {
                        writer.sleepers.push(slot.owner.clone());
                        *slot.standing() = Standing::Inserted { epoch, ids };
                    }
                    Err(error) => {
                        let alone = self.undo(writer, epoch, joining, &error);
                        slot.settle(Standing::Refused { error, alone });
                    }
                }
            }
            writer.batch.clear();
        }
    }

    /// Inserts `writer.batch` through the store's batch insert hook, in the
    /// open group or a new one, and settles each save.
    fn insert_batch(&self, writer: &mut Writer<T>) -> Batch {
        let epoch = match self.open(writer) {
            Ok(epoch) => epoch,
            Err(e) => {
                self.not_begun(writer, 0, e);
                return Batch::NotBegun;
            }
        };
        let joining = writer.saves > 0;
        let alone = writer.sleepers.is_empty() && writer.batch.len() == 1;
        let Writer { tx, batch, .. } = &mut *writer;
        let queued: Vec<&T::Queued> = batch.iter().map(|slot| &slot.queued).collect();
        let Some(inserted) = tx.insert_queued_batch(&queued, joining) else {
            return Batch::OneByOne;
        };
        match inserted {
            Ok(results) => {
                writer.saves += writer.batch.len();
                for (slot, result) in writer.batch.iter().zip(results) {
                    match result {
                        Ok(ids) => {
                            writer.sleepers.push(slot.owner.clone());
                            *slot.standing() = Standing::Inserted { epoch, ids };
                        }
                        Err(error) => slot.settle(Standing::Refused { error, alone }),
                    }
                }
            }
            Err(error) => {
                // None of it was inserted: undone as one failed save; the
                // first save fails with the error, the rest go back to the
                // queue, first, for their owners to try again.
                writer.saves += 1;
                let alone = self.undo(writer, epoch, joining, &error);
                writer.batch[0].settle(Standing::Refused { error, alone });
                let rest: Vec<_> = writer.batch.drain(1..).collect();
                self.waiting.fetch_add(rest.len(), Ordering::SeqCst);
                self.queue().splice(0..0, rest);
            }
        }
        Batch::Inserted
    }

    /// Group `at`'s begin failed with `error`: that save fails with it; the
    /// saves after it in the batch go back to the queue, first, for their
    /// owners to try.
    fn not_begun(&self, writer: &mut Writer<T>, at: usize, error: T::Error) {
        writer.batch[at].settle(Standing::NotBegun(error));
        let rest = writer.batch.drain(at + 1..);
        self.waiting.fetch_add(rest.len(), Ordering::SeqCst);
        self.queue().splice(0..0, rest);
        writer.batch.clear();
    }

    /// After a panic in the store while queued saves were being inserted:
    /// rolls the open group back and tells each of its saves, and each
    /// taken save not yet inserted, that nothing of it is stored. The
    /// panicking thread will never wait for its own save.
    fn abandon(&self, writer: &mut Writer<T>) {
        let me = thread::current().id();
        writer.sleepers.retain(|sleeper| sleeper.id() != me);
        if let Some(epoch) = writer.open {
            writer.tx.rollback();
            self.end(
                writer,
                epoch,
                Some(CommitFailure::RolledBack(PANICKED.into())),
            );
        }
        for slot in writer.batch.drain(..) {
            let mut standing = slot.standing();
            if matches!(*standing, Standing::Pending) {
                *standing = Standing::Lost;
                drop(standing);
                slot.owner.unpark();
            }
        }
    }

    /// Runs `f` on the writing connection with no group open (the open one
    /// is committed first): for work that needs a transaction of its own,
    /// or reads through the writer.
    pub fn exclusive<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut writer = self.writer();
        self.commit(&mut writer);
        let value = f(&mut writer.tx);
        self.release(writer);
        value
    }

    /// Runs `f` on the writing connection if it is idle (not held, no
    /// group open, no save waiting), else returns None at once: for reads
    /// that gain from the writer's cache, which holds what was just
    /// written, and that must not keep a save waiting long.
    pub fn try_idle<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let mut writer = self.try_writer()?;
        let value = writer.open.is_none().then(|| f(&mut writer.tx));
        self.release(writer);
        value
    }

    /// Whether a save now is likely to be alone in its group: the writer
    /// is free, no group is open, nobody waits for it, and the last group
    /// held one save. Only a hint (another save may come first): for work
    /// that pays only when saves share a group.
    pub fn likely_alone(&self) -> bool {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return false;
        }
        match self.writer.try_lock() {
            Ok(writer) => {
                let alone = writer.open.is_none() && writer.last_saves <= 1;
                // A save queued meanwhile found the writer taken by this
                // look: it is woken to take it.
                self.release(writer);
                alone
            }
            Err(_) => false,
        }
    }

    /// How many saves wait for the writer (tests use it to make a save
    /// join a group).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// The writer, counted as waiting while it waits.
    fn writer(&self) -> MutexGuard<'_, Writer<T>> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // A panic while the lock was held left at most an open group,
        // which the next holder commits or rolls back.
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        writer
    }

    /// The writer if it is free, else None at once.
    fn try_writer(&self) -> Option<MutexGuard<'_, Writer<T>>> {
        match self.writer.try_lock() {
            Ok(writer) => Some(writer),
            // As in `writer`: a panic left at most an open group.
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Lets the writer go, and wakes a queued save to take it: one queued
    /// after this holder last looked at the queue would otherwise sleep
    /// with the writer free.
    fn release(&self, writer: MutexGuard<'_, Writer<T>>) {
        drop(writer);
        let first = self.queue().first().map(|slot| slot.owner.clone());
        if let Some(owner) = first {
            owner.unpark();
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue<T>> {
        // Pushed and drained whole: a panic leaves it whole.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failures(&self) -> MutexGuard<'_, Vec<FailedGroup>> {
        // Entries are pushed and changed whole: a panic leaves them whole.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open group's epoch, beginning one if none is open.
    fn open(&self, writer: &mut Writer<T>) -> Result<u64, T::Error> {
        if let Some(epoch) = writer.open {
            return Ok(epoch);
        }
        if let Err(e) = writer.tx.begin() {
            writer.tx.ended();
            return Err(e);
        }
        writer.last_epoch += 1;
        writer.open = Some(writer.last_epoch);
        writer.saves = 0;
        Ok(writer.last_epoch)
    }

    /// Runs one save's statements; a joining save's are marked, to be
    /// undone alone. The opener is alone in the transaction (it holds the
    /// writer): its failure rolls the whole of it back, so it needs no
    /// mark.
    fn run<R>(
        tx: &mut T,
        joining: bool,
        save: impl FnOnce(&mut T) -> Result<R, T::Error>,
    ) -> Result<R, T::Error> {
        if joining {
            tx.savepoint()?;
        }
        let value = save(tx)?;
        if joining {
            tx.release()?;
        }
        Ok(value)
    }

    /// Undoes a save whose statements failed: back to its mark, or the
    /// whole group if that cannot be kept. Returns whether no save that
    /// succeeded waits on the group (the failed one was alone in it).
    fn undo(&self, writer: &mut Writer<T>, epoch: u64, joining: bool, error: &T::Error) -> bool {
        let alone = writer.sleepers.is_empty();
        if !(joining && writer.tx.rollback_to_savepoint()) {
            writer.tx.rollback();
            self.end(
                writer,
                epoch,
                Some(CommitFailure::RolledBack(error.to_string())),
            );
        }
        alone
    }

    /// Whether to yield once before committing: saves of the last group,
    /// woken by its commit, are on their way back with their next save,
    /// and one yield lets them join this group rather than each open one
    /// (and pay a flush) of its own. A lone writer's groups have one save,
    /// so it never yields.
    fn should_yield(&self, writer: &Writer<T>) -> bool {
        writer.last_saves > 1 && self.waiting.load(Ordering::SeqCst) == 0
    }

    /// Commits the open group unless another save waits to join it.
    fn commit_unless_awaited(&self, writer: &mut Writer<T>) {
        if !self.share || self.waiting.load(Ordering::SeqCst) == 0 {
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
    fn end(&self, writer: &mut Writer<T>, epoch: u64, failure: Option<CommitFailure>) {
        writer.open = None;
        writer.last_saves = writer.saves;
        writer.saves = 0;
        writer.tx.ended();
        if let Some(failure) = failure.filter(|_| !writer.sleepers.is_empty()) {
            // Before `ended` moves: a save that sees its group ended must
            // find its failure.
            self.failures().push(FailedGroup {
                epoch,
                untold: writer.sleepers.len(),
                failure,
            });
            self.failing.fetch_add(1, Ordering::SeqCst);
        }
        self.ended.store(epoch, Ordering::SeqCst);
        for sleeper in writer.sleepers.drain(..) {
            sleeper.unpark();
        }
    }

    /// Waits until group `epoch` has ended: Ok if it committed.
    fn wait_for(&self, epoch: u64) -> Result<(), CommitFailure> {
        // A wake-up may come early (a token left by an earlier unpark, or
        // a spurious one): the loop looks again.
        while self.ended.load(Ordering::SeqCst) < epoch {
            thread::park();
        }
        if self.failing.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        let mut failures = self.failures();
        let Some(at) = failures.iter().position(|f| f.epoch == epoch) else {
            return Ok(());
        };
        let failed = &mut failures[at];
        failed.untold = failed.untold.saturating_sub(1);
        let failure = failed.failure.clone();
        if failed.untold == 0 {
            failures.swap_remove(at);
            self.failing.fetch_sub(1, Ordering::SeqCst);
        }
        Err(failure)
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
        fail_begin: bool,
    }

    impl GroupTransaction for Log {
        type Error = String;
        type Queued = u32;
        fn begin(&mut self) -> Result<(), String> {
            if self.fail_begin {
                return Err("locked".into());
            }
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
        fn commit(&mut self) -> Result<(), CommitFailure> {
            self.steps.push("commit".into());
            if self.fail_commit {
                self.open.clear();
                return Err(CommitFailure::RolledBack("disk full".into()));
            }
            self.committed.append(&mut self.open);
            Ok(())
        }
        fn rollback(&mut self) {
            self.steps.push("rollback".into());
            self.open.clear();
        }
        fn insert_queued(&mut self, value: &u32) -> Result<Vec<u64>, String> {
            assert_ne!(*value, PANICS, "a bug in the store");
            insert(*value)(self).map(|v| vec![u64::from(v)])
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
            Err(SaveFailure::Refused { error, alone }) => {
                assert_eq!(error, "1 exists");
                assert!(alone);
            }
            other => panic!("{other:?}"),
        }
        engine.exclusive(|log| assert_eq!(log.committed, [1]));
    }

    /// The value whose queued insert panics.
    const PANICS: u32 = 99;

    /// Queues a save of each of `values`, each on its own thread and in
    /// that order, while the writer is held, so that all are queued
    /// before any is inserted; then lets the writer go and returns how
    /// each thread ended (Err: it panicked), in the order of `values`.
    /// A save still waiting after 10 s fails the test (it would wait for
    /// ever).
    fn queued_in_order<T: GroupTransaction<Queued = u32, Error = String> + Send>(
        engine: &GroupCommit<T>,
        values: &[u32],
    ) -> Vec<std::thread::Result<Result<Vec<u64>, SaveFailure<String>>>> {
        std::thread::scope(|s| {
            let saves = engine.exclusive(|_| {
                let mut saves = Vec::new();
                for &value in values {
                    saves.push(s.spawn(move || engine.save_queued(value)));
                    while engine.queue().len() < saves.len() {
                        std::thread::yield_now();
                    }
                }
                saves
            });
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !saves.iter().all(|save| save.is_finished())
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            let stuck = saves.iter().filter(|save| !save.is_finished()).count();
            if stuck > 0 {
                // Ends the group they wait on, so that the scope can end
                // and the test fail rather than hang.
                engine.exclusive(|_| ());
            }
            let ended = saves.into_iter().map(|save| save.join()).collect();
            assert_eq!(
                stuck, 0,
                "saves still waiting 10 s after the writer was let go"
            );
            ended
        })
    }

    /// As [`queued_in_order`], for saves that do not panic.
    fn queued_behind_the_writer(
        engine: &GroupCommit<Log>,
        values: &[u32],
    ) -> Vec<Result<Vec<u64>, SaveFailure<String>>> {
        queued_in_order(engine, values)
            .into_iter()
            .map(|ended| ended.expect("no save panics"))
            .collect()
    }

    #[test]
    fn a_store_that_panics_inserting_queued_saves_fails_each_of_them_and_stores_none() {
        let engine = GroupCommit::new(Log::default(), true);
        // Whichever owner holds the writer inserts 1 and 2, then panics
        // on the third: the first two wait on a group nobody would end.
        let ended = queued_in_order(&engine, &[1, 2, PANICS, 3]);
        let panicked = ended.iter().filter(|e| e.is_err()).count();
        assert_eq!(panicked, 1, "the holder's thread panicked, and only it");
        for outcome in ended.into_iter().filter_map(Result::ok) {
            assert!(
                matches!(&outcome, Err(SaveFailure::GroupFailed(CommitFailure::RolledBack(why))) if why.contains("panicked")),
                "every other save failed, none left waiting: {outcome:?}"
            );
        }
        assert_eq!(
            engine.failing.load(Ordering::SeqCst),
            0,
            "every save was told"
        );
        assert_eq!(engine.waiting(), 0);
        // The writer is usable again, and nothing of the group is stored.
        assert!(matches!(engine.save_queued(4), Ok(ids) if ids == [4]));
        engine.exclusive(|log| assert_eq!(log.committed, [4]));
    }

    #[test]
    fn queued_saves_are_inserted_by_one_holder_in_one_group() {
        let engine = GroupCommit::new(Log::default(), true);
        let outcomes = queued_behind_the_writer(&engine, &[1, 2, 3, 4]);
        for (value, outcome) in [1u64, 2, 3, 4].iter().zip(&outcomes) {
            assert!(
                matches!(outcome, Ok(ids) if ids == &[*value]),
                "{value}: {outcome:?}"
            );
        }
        engine.exclusive(|log| {
            let mut committed = log.committed.clone();
            committed.sort_unstable();
            assert_eq!(committed, [1, 2, 3, 4]);
            let count = |step: &str| log.steps.iter().filter(|s| *s == step).count();
            assert_eq!((count("begin"), count("commit")), (1, 1), "{:?}", log.steps);
            assert_eq!(count("savepoint"), 3, "every save but the opener joins");
        });
        assert_eq!(engine.waiting(), 0, "no save counted as waiting");
    }

    #[test]
    fn a_queued_save_at_a_taken_key_is_refused_alone() {
        let engine = GroupCommit::new(Log::default(), true);
        assert!(engine.save(insert(2)).is_ok());
        let outcomes = queued_behind_the_writer(&engine, &[1, 2, 3]);
        assert!(
            matches!(&outcomes[0], Ok(ids) if ids == &[1]),
            "{:?}",
            outcomes[0]
        );
        assert!(
            matches!(&outcomes[1], Err(SaveFailure::Refused { error, .. }) if error == "2 exists"),
            "{:?}",
            outcomes[1]
        );
        assert!(
            matches!(&outcomes[2], Ok(ids) if ids == &[3]),
            "{:?}",
            outcomes[2]
        );
        engine.exclusive(|log| {
            let mut committed = log.committed.clone();
            committed.sort_unstable();
            assert_eq!(committed, [1, 2, 3], "the refused save stored nothing");
        });
    }

    #[test]
    fn a_failed_commit_fails_every_queued_save_of_the_group() {
        let engine = GroupCommit::new(
            Log {
                fail_commit: true,
                ..Log::default()
            },
            true,
        );
        for outcome in queued_behind_the_writer(&engine, &[1, 2, 3]) {
            assert!(
                matches!(
                    outcome,
                    Err(SaveFailure::GroupFailed(CommitFailure::RolledBack(_)))
                ),
                "{outcome:?}"
            );
        }
        engine.exclusive(|log| assert!(log.committed.is_empty()));
        assert_eq!(
            engine.failing.load(Ordering::SeqCst),
            0,
            "every save was told"
        );
    }

    #[test]
    fn queued_saves_whose_group_cannot_begin_each_fail_and_store_nothing() {
        let engine = GroupCommit::new(
            Log {
                fail_begin: true,
                ..Log::default()
            },
            true,
        );
        for outcome in queued_behind_the_writer(&engine, &[1, 2, 3]) {
            assert!(
                matches!(&outcome, Err(SaveFailure::NotBegun(e)) if e == "locked"),
                "{outcome:?}"
            );
        }
        engine.exclusive(|log| assert!(log.committed.is_empty() && log.open.is_empty()));
        assert_eq!(engine.waiting(), 0);
        assert!(engine.queue().is_empty());
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
                                let value = if t == 7 && i == 0 { 0 } else { t * 100 + i };
                                // Odd threads queue their saves, even ones
                                // take the writer: both kinds share groups.
                                if t % 2 == 1 {
                                    engine.save_queued(value).is_ok()
                                } else {
                                    engine.save(insert(value)).is_ok()
                                }
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
            assert_eq!(committed.len(), 399, "one save of 400 conflicts");
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
            Err(SaveFailure::GroupFailed(CommitFailure::RolledBack(_)))
        ));
        engine.exclusive(|log| assert!(log.committed.is_empty()));
    }

    /// The value whose batch fails as a whole (a connection that broke).
    const BREAKS: u32 = 77;

    /// [`Log`] with the batch insert hook: each batch in one call.
    #[derive(Default)]
    struct Batches {
        log: Log,
        /// The size of each batch inserted.
        sizes: Vec<usize>,
    }

    impl GroupTransaction for Batches {
        type Error = String;
        type Queued = u32;
        const BATCH_INSERT: bool = true;
        fn begin(&mut self) -> Result<(), String> {
            self.log.begin()
        }
        fn savepoint(&mut self) -> Result<(), String> {
            self.log.savepoint()
        }
        fn release(&mut self) -> Result<(), String> {
            self.log.release()
        }
        fn rollback_to_savepoint(&mut self) -> bool {
            // As PostgreSQL's after a failed statement: the transaction
            // cannot be kept.
            false
        }
        fn commit(&mut self) -> Result<(), CommitFailure> {
            self.log.commit()
        }
        fn rollback(&mut self) {
            self.log.rollback();
        }
        fn insert_queued(&mut self, _: &u32) -> Result<Vec<u64>, String> {
            unreachable!("every queued save goes through the batch insert")
        }
        fn insert_queued_batch(
            &mut self,
            batch: &[&u32],
            _joining: bool,
        ) -> Option<Result<Vec<Result<Vec<u64>, String>>, String>> {
            self.sizes.push(batch.len());
            if batch.contains(&&BREAKS) {
                return Some(Err("the connection broke".into()));
            }
            Some(Ok(batch
                .iter()
                .map(|value| insert(**value)(&mut self.log).map(|v| vec![u64::from(v)]))
                .collect()))
        }
    }

    #[test]
    fn queued_saves_go_to_the_batch_insert_in_one_call_and_refusals_fail_alone() {
        let engine = GroupCommit::new(Batches::default(), true);
        assert_eq!(
            engine.save(|b: &mut Batches| insert(2)(&mut b.log)).ok(),
            Some(2)
        );
        let ended = queued_in_order(&engine, &[1, 2, 3]);
        let ids: Vec<_> = ended
            .into_iter()
            .map(|save| save.expect("no panic").map_err(|e| format!("{e:?}")))
            .collect();
        assert_eq!(ids[0], Ok(vec![1]));
        assert!(
            matches!(&ids[1], Err(e) if e.contains("2 exists")),
            "{:?}",
            ids[1]
        );
        assert_eq!(ids[2], Ok(vec![3]));
        engine.exclusive(|b| {
            assert_eq!(b.sizes, [3], "one call for the three queued saves");
            let mut committed = b.log.committed.clone();
            committed.sort_unstable();
            assert_eq!(committed, [1, 2, 3]);
        });
    }

    #[test]
    fn a_batch_that_fails_whole_stores_none_of_it_and_the_rest_try_again() {
        let engine = GroupCommit::new(Batches::default(), true);
        let ended = queued_in_order(&engine, &[BREAKS, 4, 5]);
        let results: Vec<_> = ended
            .into_iter()
            .map(|save| save.expect("no panic"))
            .collect();
        assert!(
            matches!(&results[0], Err(SaveFailure::Refused { error, .. }) if error.contains("broke")),
            "{:?}",
            results[0]
        );
        assert_eq!(results[1].as_ref().ok(), Some(&vec![4]));
        assert_eq!(results[2].as_ref().ok(), Some(&vec![5]));
        engine.exclusive(|b| {
            assert_eq!(
                b.sizes,
                [3, 2],
                "the failed batch, then the two queued again"
            );
            assert_eq!(b.log.committed, [4, 5]);
        });
    }
}
