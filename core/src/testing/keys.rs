//! The key store contract: what every [`KeyStore`] must do to keep the
//! data keys of personal data. Each function takes a fresh, empty store
//! (with its events' recorder, for keys written in a save) and panics
//! saying what the store got wrong.
//!
//! ```
//! use std::sync::Arc;
//! use annals_core::persistence::keys::MemoryKeyStore;
//! use annals_core::persistence::memory::MemoryRecorder;
//! use annals_core::testing::keys;
//!
//! let (events, store) = (MemoryRecorder::new(), MemoryKeyStore::default());
//! keys::the_first_key_of_a_subject_wins(&events, &store);
//! ```

use std::sync::Arc;

use crate::persistence::keys::{KeyStore, StoredKey};
use crate::persistence::ProcessRecorder;

/// A fresh store's events recorder and key store for a test named `name`,
/// or `None` when the store is not available here.
pub type MakeKeyStore = fn(&str) -> Option<(Arc<dyn ProcessRecorder>, Arc<dyn KeyStore>)>;

/// Generates the key store contract's tests (one `#[test]` per function
/// of [`testing::keys`](crate::testing::keys)) for the store `$make` (a
/// [`MakeKeyStore`]) opens; skipped as
/// [`recorder_contract!`](crate::recorder_contract) skips.
///
/// ```
/// use std::sync::Arc;
/// use annals_core::persistence::keys::MemoryKeyStore;
/// use annals_core::persistence::memory::MemoryRecorder;
///
/// annals_core::key_store_contract!(|_name| Some((
///     Arc::new(MemoryRecorder::new()),
///     Arc::new(MemoryKeyStore::default()),
/// )));
/// ```
#[macro_export]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
macro_rules! key_store_contract {
    ($make:expr $(,)?) => {
        $crate::key_store_contract!(@tests $make;
            the_first_key_of_a_subject_wins,
            a_deleted_key_is_gone,
            keys_are_listed_in_pages_in_subject_order,
            a_key_is_rewrapped_only_as_it_was,
            keys_written_in_a_save_are_stored_with_it_or_not_at_all,
            concurrent_writers_of_one_subject_share_one_key,
        );
    };
    (@tests $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                let make: $crate::testing::keys::MakeKeyStore = $make;
                match make(stringify!($name)) {
                    Some((events, keys)) => $crate::testing::keys::$name(&*events, &*keys),
                    None => $crate::testing::skipped(stringify!($name)),
                }
            }
        )+
    };
}

fn key(subject: &str, id: u8) -> StoredKey {
    StoredKey {
        subject: subject.to_owned(),
        key_id: vec![id; 8],
        wrapped: vec![id.wrapping_add(100); 60],
    }
}

/// `insert_key` stores a subject's first key and gives every later writer
/// that one; `select_key` reads it back, bytes exactly.
pub fn the_first_key_of_a_subject_wins(_: &dyn ProcessRecorder, store: &dyn KeyStore) {
    assert_eq!(
        store.select_key("ada").expect("the key store answers"),
        None,
        "a fresh store has no keys"
    );
    let first = key("ada", 1);
    assert_eq!(
        store.insert_key(&first).expect("the key store answers"),
        first
    );
    assert_eq!(
        store
            .insert_key(&key("ada", 2))
            .expect("the key store answers"),
        first,
        "a second key of a subject must give the first back, not replace it"
    );
    assert_eq!(
        store.select_key("ada").expect("the key store answers"),
        Some(first)
    );
    assert_eq!(
        store.select_key("bob").expect("the key store answers"),
        None
    );
}

/// `delete_key` erases a subject's key (true), and erasing it again
/// finds nothing (false); other subjects keep theirs; a new key can then
/// be made for the subject.
pub fn a_deleted_key_is_gone(_: &dyn ProcessRecorder, store: &dyn KeyStore) {
    store
        .insert_key(&key("ada", 1))
        .expect("the key store answers");
    store
        .insert_key(&key("bob", 2))
        .expect("the key store answers");
    assert!(store.delete_key("ada").expect("the key store answers"));
    assert!(
        !store.delete_key("ada").expect("the key store answers"),
        "a key is erased once"
    );
    assert_eq!(
        store.select_key("ada").expect("the key store answers"),
        None
    );
    assert_eq!(
        store.select_key("bob").expect("the key store answers"),
        Some(key("bob", 2))
    );
    assert_eq!(
        store
            .insert_key(&key("ada", 3))
            .expect("the key store answers"),
        key("ada", 3)
    );
}

/// `select_keys` lists every key once, in subject order, a page at a
/// time.
pub fn keys_are_listed_in_pages_in_subject_order(_: &dyn ProcessRecorder, store: &dyn KeyStore) {
    for (i, subject) in ["c", "a", "e", "b", "d"].iter().enumerate() {
        store
            .insert_key(&key(subject, i as u8))
            .expect("the key store answers");
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .select_keys(after.as_deref(), 2)
            .expect("the key store answers");
        assert!(page.len() <= 2, "a page is at most the limit");
        let Some(last) = page.last() else { break };
        after = Some(last.subject.clone());
        seen.extend(page.into_iter().map(|k| k.subject));
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
}

/// `rewrap_key` replaces the wrapped bytes of the key with that id, and
/// of no other (a key forgotten and made again meanwhile is not touched).
pub fn a_key_is_rewrapped_only_as_it_was(_: &dyn ProcessRecorder, store: &dyn KeyStore) {
    let first = key("ada", 1);
    store.insert_key(&first).expect("the key store answers");
    assert!(store
        .rewrap_key(&first, &[9; 60])
        .expect("the key store answers"));
    let stored = store
        .select_key("ada")
        .expect("the key store answers")
        .expect("the key store answers");
    assert_eq!(
        (stored.key_id, stored.wrapped),
        (first.key_id.clone(), vec![9; 60])
    );
    store.delete_key("ada").expect("the key store answers");
    store
        .insert_key(&key("ada", 2))
        .expect("the key store answers");
    assert!(
        !store
            .rewrap_key(&first, &[7; 60])
            .expect("the key store answers"),
        "the key with another id must not be re-wrapped"
    );
    assert_eq!(
        store
            .select_key("ada")
            .expect("the key store answers")
            .expect("the key store answers")
            .wrapped,
        key("ada", 2).wrapped
    );
}

/// Where the store writes keys in a save's transaction: they are stored
/// with the save's events; a save whose events conflict stores no key;
/// a key for a subject with another key fails the save, which stores no
/// event.
pub fn keys_written_in_a_save_are_stored_with_it_or_not_at_all(
    events: &dyn ProcessRecorder,
    store: &dyn KeyStore,
) {
    if !store.writes_in_saves() {
        return;
    }
    let save = |rows: &[crate::persistence::StoredEvent], keys: &[StoredKey]| {
        events.insert_events_with(rows, None, &mut |tx| store.insert_keys_in(tx, keys))
    };
    let first = super::contract::event("ada", 1, "Customer.Registered");
    save(std::slice::from_ref(&first), &[key("ada", 1)]).expect("the key store answers");
    assert_eq!(
        store.select_key("ada").expect("the key store answers"),
        Some(key("ada", 1))
    );
    // The same key again (a second save of a subject whose key is not yet
    // known to be stored) is fine.
    save(
        &[super::contract::event("ada", 2, "Customer.Ordered")],
        &[key("ada", 1)],
    )
    .expect("the key store answers");

    let conflict = save(std::slice::from_ref(&first), &[key("bob", 2)]);
    assert!(conflict.is_err(), "a taken version must fail the save");
    assert_eq!(
        store.select_key("bob").expect("the key store answers"),
        None,
        "a failed save must store no key"
    );

    let other = save(
        &[super::contract::event("ada", 3, "Customer.Ordered")],
        &[key("ada", 3)],
    );
    assert!(
        other.is_err(),
        "a second key of a subject must fail the save"
    );
    let stored = events
        .select_events("ada", &crate::persistence::EventQuery::all())
        .expect("the key store answers");
    assert_eq!(
        stored.len(),
        2,
        "a save that failed on its key must store no event"
    );
    assert_eq!(
        store.select_key("ada").expect("the key store answers"),
        Some(key("ada", 1))
    );
}

/// Writers racing to make one subject's key all end with the same key.
pub fn concurrent_writers_of_one_subject_share_one_key(
    _: &dyn ProcessRecorder,
    store: &dyn KeyStore,
) {
    let winners: Vec<StoredKey> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=8u8)
            .map(|i| {
                s.spawn(move || {
                    store
                        .insert_key(&key("ada", i))
                        .expect("the key store answers")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a writer thread panicked"))
            .collect()
    });
    let stored = store
        .select_key("ada")
        .expect("the key store answers")
        .expect("the key store answers");
    assert!(
        winners.iter().all(|w| *w == stored),
        "every writer must be given the one stored key: {winners:?}"
    );
}
