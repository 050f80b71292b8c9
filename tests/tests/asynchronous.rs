//! The async facade (`annals::asynchronous`): its futures are `Send`, on
//! both kinds of runtime,
//! streams yield the history and then new events, `wait_for` sees a
//! follower's progress, and a save whose future is dropped is stored
//! whole or not at all.

use std::sync::Arc;
use std::time::Duration;

use annals::asynchronous::AsyncApplication;
use annals::prelude::*;
use annals::system::{Policies, ProcessApplication};
use annals_tests::dogs::Dog;
use futures::StreamExt;

fn assert_send<T: Send>(_: &T) {}

async fn school() -> AsyncApplication {
    AsyncApplication::build(Application::builder("School"))
        .await
        .expect("the school")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_are_send_and_calls_work() {
    calls_work().await;
}

// A current-thread runtime has no worker to take over: calls go to the
// blocking pool instead of `block_in_place` (which would panic there).
#[tokio::test(flavor = "current_thread")]
async fn calls_work_on_a_current_thread_runtime() {
    calls_work().await;
}

async fn calls_work() {
    let school = school().await;
    let saving = school.save(Dog::register("Fido".into()));
    assert_send(&saving);
    let mut fido = saving.await.expect("Fido saved");
    assert!(fido.pending_events().is_empty(), "saved");
    fido.add_trick("sit".into());
    let fido = school.save(fido).await.expect("his trick saved");
    let command = school.execute(fido.id(), |d: &mut Dog| -> Result<(), String> {
        d.add_trick("roll".into());
        Ok(())
    });
    assert_send(&command);
    command.await.expect("the command saved");
    let deciding = school.decide(fido.id(), |d: &Dog| -> Result<_, String> {
        Ok(vec![annals_tests::dogs::DogEvent::TrickAdded {
            trick: format!("trick {}", d.tricks.len() + 1),
        }])
    });
    assert_send(&deciding);
    assert_eq!(deciding.await.expect("decided"), 4);
    let read = school.get::<Dog>(fido.id()).await.expect("Fido read");
    assert_eq!(read.tricks, ["sit", "roll", "trick 3"]);
    assert_eq!(
        school
            .get_at::<Dog>(fido.id(), 2)
            .await
            .expect("Fido at version 2")
            .tricks,
        ["sit"]
    );
    assert_eq!(
        school.last_notification_id().await.expect("the last id"),
        Some(4)
    );
    assert_eq!(school.notifications(2, 10).await.expect("the log").len(), 3);
    assert!(school
        .get::<Dog>(Uuid::new_v4())
        .await
        .expect_err("no such dog")
        .is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_yield_the_history_then_new_events_and_stop_when_dropped() {
    let school = school().await;
    let fido = school.save(Dog::register("Fido".into())).await.unwrap();
    let mut log = school.subscribe(1, Vec::new()).await.unwrap();
    let mut changes = school.changes::<Dog>(fido.id()).await.unwrap();
    assert_eq!(log.next().await.unwrap().unwrap().id, 1);
    assert_eq!(changes.next().await.unwrap().unwrap().originator_version, 1);
    school.save(Dog::register("Rex".into())).await.unwrap();
    let mut fido = school.get::<Dog>(fido.id()).await.unwrap();
    fido.add_trick("sit".into());
    school.save(fido).await.unwrap();
    let within = Duration::from_secs(10);
    assert_eq!(
        tokio::time::timeout(within, log.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .id,
        2
    );
    assert_eq!(
        tokio::time::timeout(within, log.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .id,
        3
    );
    let change = tokio::time::timeout(within, changes.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        change.originator_version, 2,
        "Rex's event is not Fido's change"
    );
    drop(log);
    drop(changes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_sees_a_follower_process_a_notification() {
    let school = Arc::new(Application::builder("School").build().unwrap());
    let kennel = Arc::new(Application::builder("Kennel").build().unwrap());
    let follower =
        ProcessApplication::new(kennel.clone(), Policies::new().on::<Dog>(|_, _| Ok(())));
    let (leader, kennel) = (
        AsyncApplication::new(school.clone()),
        AsyncApplication::new(kennel),
    );
    leader.save(Dog::register("Fido".into())).await.unwrap();
    assert!(!leader
        .wait_for(&kennel, 1, Duration::from_millis(20))
        .await
        .unwrap());
    let processing = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(50));
        follower.pull(&school, 10)
    });
    assert!(leader
        .wait_for(&kennel, 1, Duration::from_secs(10))
        .await
        .unwrap());
    assert_eq!(processing.await.unwrap().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_whose_future_is_dropped_is_whole_or_absent() {
    let school = school().await;
    let mut dogs = Vec::new();
    for i in 0..50 {
        let mut dog = Dog::register(format!("dog-{i}"));
        for t in 0..5 {
            dog.add_trick(format!("trick-{t}"));
        }
        dogs.push(dog);
    }
    let ids: Vec<Uuid> = dogs.iter().map(|d| d.id()).collect();
    // Polled once, then dropped: the blocking save it started goes on.
    let saving = school.save_all(dogs);
    let _ = tokio::time::timeout(Duration::from_micros(1), saving).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stored = loop {
        let n = school.last_notification_id().await.unwrap().unwrap_or(0);
        if n == 300 || tokio::time::Instant::now() >= deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        stored == 0 || stored == 300,
        "{stored} of 300 events: a partial save"
    );
    if stored == 300 {
        for id in ids {
            assert_eq!(school.get::<Dog>(id).await.unwrap().version(), 6);
        }
    }
}

/// A command waiting for its aggregate's turn holds no thread: with one
/// blocking thread in all and a command queued on a held aggregate, a
/// command on another aggregate still runs (it would wait forever if the
/// queued one held the thread while it waited).
#[test]
fn a_command_waiting_for_its_turn_holds_no_thread() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let school = school().await;
        let fido = school
            .save(Dog::register("Fido".into()))
            .await
            .expect("Fido");
        let rex = school.save(Dog::register("Rex".into())).await.expect("Rex");
        let held = school.lock_commands::<Dog>(&[fido.id()]).await;
        let queued = tokio::spawn({
            let school = school.clone();
            let id = fido.id();
            async move {
                school
                    .execute(id, |dog: &mut Dog| -> Result<(), String> {
                        dog.add_trick("sit".into());
                        Ok(())
                    })
                    .await
            }
        });
        tokio::task::yield_now().await;
        let other = school.execute(rex.id(), |dog: &mut Dog| -> Result<(), String> {
            dog.add_trick("roll".into());
            Ok(())
        });
        tokio::time::timeout(Duration::from_secs(10), other)
            .await
            .expect("the other aggregate's command is not stuck behind the queued one")
            .expect("Rex's command");
        assert!(!queued.is_finished(), "Fido is held");
        drop(held);
        queued
            .await
            .expect("no panic")
            .expect("Fido's command, after its turn");
        let fido: Dog = school.get(fido.id()).await.expect("Fido");
        assert_eq!(fido.tricks, ["sit"]);
    });
}
