//! The DCB contract on UmaDB: each test on a server of its own, started
//! from the command `ANNALS_UMADB` names (`.ci/umadb` installs it), on a
//! fresh database in a temporary directory. Unset: the tests say SKIPPED
//! (and fail in CI).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals_core::error::Result;
use annals_core::persistence::dcb::{
    DcbAppendCondition, DcbEvent, DcbQuery, DcbReadResponse, DcbRecorder,
};
use annals_core::persistence::wake::{Signal, Watch};
use annals_umadb::{UmaDbConfig, UmaDbRecorder};

/// A recorder on a server of its own, which it stops (and whose database
/// it removes) when dropped.
#[derive(Debug)]
struct OnItsOwnServer {
    recorder: UmaDbRecorder,
    server: Child,
    dir: std::path::PathBuf,
}

impl Drop for OnItsOwnServer {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl DcbRecorder for OnItsOwnServer {
    fn read(
        &self,
        query: &DcbQuery,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<DcbReadResponse> {
        self.recorder.read(query, after, limit)
    }

    fn append(&self, events: &[DcbEvent], condition: Option<&DcbAppendCondition>) -> Result<u64> {
        self.recorder.append(events, condition)
    }

    fn watch(&self, signal: &Arc<Signal>) -> Result<Watch> {
        self.recorder.watch(signal)
    }
}

/// The UmaDB server command, or `None` (a failure in CI).
fn server_command() -> Option<String> {
    match std::env::var("ANNALS_UMADB") {
        Ok(command) => Some(command),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "the UmaDB tests must run in CI: set ANNALS_UMADB (.ci/run installs the server)"
            );
            None
        }
    }
}

fn fresh_server(test: &str) -> Option<Arc<dyn DcbRecorder>> {
    let command = server_command()?;
    let dir = std::env::temp_dir().join(format!(
        "annals-umadb-{test}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = Command::new(&command)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--db-path")
        .arg(dir.join("uma.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let config = UmaDbConfig::new(&format!("127.0.0.1:{port}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let recorder = loop {
        // Connecting is lazy: a head read shows the server answers.
        let attempt = UmaDbRecorder::open(&config).and_then(|r| {
            r.read(&DcbQuery::all(), None, Some(1))?;
            Ok(r)
        });
        match attempt {
            Ok(recorder) => break recorder,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                let _ = server.kill();
                let _ = server.wait();
                let _ = std::fs::remove_dir_all(&dir);
                panic!("UmaDB did not come up on port {port}: {}", e.report())
            }
        }
    };
    Some(Arc::new(OnItsOwnServer {
        recorder,
        server,
        dir,
    }))
}

annals_core::dcb_recorder_contract!(fresh_server);

/// The shared server `.ci/run` starts (`ANNALS_UMADB_URI`), opened from
/// the settings as an application would: events with tags of this run's
/// own, read back by query; a stale condition conflicts.
#[test]
fn the_server_from_the_settings() {
    use annals_core::env::Env;
    use annals_core::persistence::dcb::DcbQueryItem;

    let Ok(uri) = std::env::var("ANNALS_UMADB_URI") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the UmaDB tests must run in CI: set ANNALS_UMADB_URI (.ci/run starts a server)"
        );
        annals_core::testing::skipped("the_server_from_the_settings");
        return;
    };
    let env = Env::from_map("Courses", [("UMADB_URI", uri.as_str())]);
    let store = UmaDbRecorder::open(&UmaDbConfig::from_env(&env).expect("settings")).expect("open");
    let tag = format!(
        "course-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let course = DcbQuery::item(DcbQueryItem::new().tags([tag.as_str()]));
    let read = store.read(&course, None, None).expect("read");
    assert!(read.events.is_empty());
    let condition = DcbAppendCondition::new(course.clone()).after(read.head);
    let registered = DcbEvent::new("CourseRegistered", b"{}".to_vec()).tags([tag.as_str()]);
    let last = store
        .append(std::slice::from_ref(&registered), Some(&condition))
        .expect("append");
    let err = store
        .append(&[registered], Some(&condition))
        .expect_err("the course is registered already");
    assert!(err.is_conflict(), "{}", err.report());
    let read = store.read(&course, None, None).expect("read");
    assert_eq!(read.events.len(), 1);
    assert_eq!(read.events[0].position, last);
}
