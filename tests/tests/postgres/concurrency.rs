//! Concurrent readers and writers, conflicts, and connections killed
//! under group commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use annals::persistence::postgres::OriginatorIdType;
use annals::persistence::{AggregateRecorder, ApplicationRecorder, EventQuery, NotificationQuery};
use annals::testing::contract::event;
use annals::Error;

use crate::{client, fresh, server, text_config};

/// Writers whose saves now and then conflict (wasting the ids they drew:
/// gaps in the log) while readers poll from their last id + 1: every
/// reader sees every committed id, in order, none skipped.
#[test]
fn readers_polling_while_writers_commit_never_skip_an_event() {
    let Some(mut config) = server() else {
        return annals_tests::skipped("readers_never_skip");
    };
    config.originator_id_type = OriginatorIdType::Text;
    config.pool_size = 8;
    let r = fresh(&config, "pg_readers_never_skip");
    const WRITERS: u64 = 4;
    const SAVES: u64 = 300;
    let done = AtomicBool::new(false);
    let seen: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut ids = Vec::new();
                    let mut last = 0;
                    loop {
                        // Read `done` before the page: an empty page after
                        // the writers finished means caught up.
                        let finished = done.load(Ordering::SeqCst);
                        let page = r
                            .select_notifications(&NotificationQuery::new(last + 1, 100))
                            .expect("select");
                        if page.is_empty() {
                            if finished {
                                break ids;
                            }
                            std::thread::yield_now();
                        }
                        for n in page {
                            assert!(n.id > last, "{} after {last}", n.id);
                            last = n.id;
                            ids.push(n.id);
                        }
                    }
                })
            })
            .collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let r = &r;
                scope.spawn(move || {
                    for i in 0..SAVES {
                        let id = format!("w{w}-{}", i / 3);
                        r.insert_events(&[event(&id, i % 3 + 1, "T")])
                            .unwrap_or_else(|e| panic!("writer {w} save {i}: {e}"));
                        if i % 10 == 9 {
                            let err = r
                                .insert_events(&[event(&id, i % 3 + 1, "T")])
                                .expect_err("stored already");
                            assert!(err.is_conflict(), "{err}");
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        done.store(true, Ordering::SeqCst);
        readers
            .into_iter()
            .map(|h| h.join().expect("reader"))
            .collect()
    });
    let all: Vec<u64> = r
        .select_notifications(&NotificationQuery::new(1, 100_000))
        .expect("all")
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(all.len() as u64, WRITERS * SAVES, "every save stored once");
    assert!(all.windows(2).all(|w| w[0] < w[1]), "ids increase");
    assert!(
        *all.last().expect("ids") > WRITERS * SAVES,
        "the conflicts left gaps, which the readers had to step over"
    );
    for ids in seen {
        assert_eq!(ids, all, "a reader saw every notification, in order");
    }
}

#[test]
fn a_conflict_names_the_taken_key_and_a_nul_is_refused_before_the_server() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("conflict_key");
    };
    let r = fresh(&config, "pg_conflict_key");
    r.insert_events(&[event("a", 1, "T"), event("a", 2, "T")])
        .expect("insert");
    // Version 3 is free, 2 is taken: the insert stores 3, then undoes it.
    match r.insert_events(&[event("a", 3, "T"), event("a", 2, "T")]) {
        Err(Error::Conflict { id, version, .. }) => {
            assert_eq!((id.as_deref(), version), (Some("a"), Some(2)));
        }
        other => panic!("a conflict at a/2, got {other:?}"),
    }
    let err = r
        .insert_events(&[event("n", 1, "T\0")])
        .expect_err("PostgreSQL's text cannot hold a NUL");
    assert!(!err.is_conflict());
    assert!(err.report().to_string().contains("NUL character"), "{err}");
    let stored: Vec<u64> = r
        .select_events("a", &EventQuery::all())
        .expect("select")
        .iter()
        .map(|e| e.originator_version)
        .collect();
    assert_eq!(stored, [1, 2]);
    assert_eq!(r.max_notification_id().expect("max"), 2);
    r.insert_events(&[event("a", 3, "T")])
        .expect("the store goes on");
    // Saves that join another's transaction (group commit) take another
    // path to the same error: 8 threads race for the same versions.
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for v in 1..=30 {
                    match r.insert_events(&[event("race", v, "T"), event("race", v + 100, "T")]) {
                        Ok(_) => {}
                        Err(Error::Conflict { id, version, .. }) => {
                            assert_eq!(id.as_deref(), Some("race"));
                            assert!(
                                version == Some(v) || version == Some(v + 100),
                                "{version:?} for {v}"
                            );
                        }
                        Err(e) => panic!("not a conflict: {}", e.report()),
                    }
                }
            });
        }
    });
    let race: Vec<u64> = r
        .select_events("race", &EventQuery::all())
        .expect("select")
        .iter()
        .map(|e| e.originator_version)
        .collect();
    assert_eq!(race, (1..=30).chain(101..=130).collect::<Vec<_>>());
}

#[test]
fn concurrent_saves_get_the_notification_ids_of_their_own_events() {
    let Some(config) = text_config() else {
        return annals_tests::skipped("combined_ids");
    };
    let r = fresh(&config, "pg_combined_ids");
    // Saves of 1 to 3 events, queued behind one another and inserted by
    // whichever holds the writer; every fifth one at a taken key.
    // Per acknowledged save: its ids, and the (stream, version) of its events.
    type Saved = (Vec<u64>, Vec<(String, u64)>);
    let saved: Vec<Saved> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let r = &r;
                scope.spawn(move || {
                    let mut saved = Vec::new();
                    let mut next = [1u64; 3];
                    for i in 0..60u64 {
                        let j = (i % 3) as usize;
                        let stream = format!("s{t}-{j}");
                        let taken = i % 5 == 4 && next[j] > 1;
                        let version = if taken { 1 } else { next[j] };
                        let n = 1 + (i / 3) % 3;
                        let events: Vec<_> =
                            (0..n).map(|k| event(&stream, version + k, "T")).collect();
                        match r.insert_events(&events) {
                            Ok(ids) => {
                                assert!(!taken, "save {t}/{i} at a taken key was stored");
                                next[j] += n;
                                let keys = events
                                    .iter()
                                    .map(|e| (e.originator_id.clone(), e.originator_version))
                                    .collect();
                                saved.push((ids, keys));
                            }
                            Err(e) if e.is_conflict() && taken => {}
                            Err(e) => panic!("save {t}/{i}: {}", e.report()),
                        }
                    }
                    saved
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let log = r
        .select_notifications(&NotificationQuery::new(1, 100_000))
        .expect("log");
    let by_id: std::collections::HashMap<u64, (String, u64)> = log
        .iter()
        .map(|n| {
            (
                n.id,
                (n.event.originator_id.clone(), n.event.originator_version),
            )
        })
        .collect();
    let events: usize = saved.iter().map(|(ids, _)| ids.len()).sum();
    assert_eq!(log.len(), events, "every stored event was acknowledged");
    for (ids, keys) in &saved {
        let found: Vec<_> = ids.iter().map(|id| by_id[id].clone()).collect();
        assert_eq!(&found, keys, "ids {ids:?}");
    }
}

#[test]
fn saves_of_groups_whose_connection_is_killed_are_stored_whole_or_not_at_all() {
    let Some(mut config) = server() else {
        return annals_tests::skipped("killed_groups");
    };
    config.originator_id_type = OriginatorIdType::Text;
    let r = fresh(&config, "pg_killed_groups");
    let done = AtomicBool::new(false);
    let outcomes: Vec<(String, Result<Vec<u64>, String>)> = std::thread::scope(|scope| {
        let killer = scope.spawn(|| {
            let mut db = client(&config);
            let mut kills = 0;
            for _ in 0..40 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
                let killed: i64 = db
                    .query_one(
                        "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity \
                         WHERE pid <> pg_backend_pid() AND query LIKE '%pg_killed_groups_events%'",
                        &[],
                    )
                    .expect("terminate")
                    .get(0);
                kills += killed;
            }
            kills
        });
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let r = &r;
                scope.spawn(move || {
                    (0..250)
                        .map(|i| {
                            let stream = format!("k{t}-{i}");
                            let saved = r
                                .insert_events(&[event(&stream, 1, "T"), event(&stream, 2, "T")])
                                .map_err(|e| e.report().to_string());
                            (stream, saved)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let outcomes = writers
            .into_iter()
            .flat_map(|h| h.join().expect("writer"))
            .collect();
        done.store(true, Ordering::SeqCst);
        assert!(
            killer.join().expect("killer") > 0,
            "no connection was killed"
        );
        outcomes
    });
    let mut oks = 0;
    for (stream, saved) in &outcomes {
        let stored = r.select_events(stream, &EventQuery::all()).expect("select");
        match saved {
            Ok(ids) => {
                oks += 1;
                assert_eq!(stored.len(), 2, "{stream}: acknowledged, stored whole");
                assert_eq!(ids.len(), 2);
            }
            Err(e) if e.contains("unknown") => {
                assert!(stored.len() == 2 || stored.is_empty(), "{stream}: {e}")
            }
            Err(e) => assert!(stored.is_empty(), "{stream}: failed, yet stored: {e}"),
        }
    }
    eprintln!(
        "killed groups: {oks} of {} saves acknowledged",
        outcomes.len()
    );
    assert!(oks > 0, "no save got through");
}
