//! Tables in a configured schema, and roles that may not create, or do
//! not own, the tables.

use annals::persistence::postgres::{OriginatorIdType, PostgresConfig, PostgresRecorder};
use annals::persistence::{AggregateRecorder, EventQuery};
use annals::testing::contract::event;

use crate::{client, server};

#[test]
fn tables_go_in_the_configured_schema() {
    let Some(mut config) = server() else {
        return annals_tests::skipped("schema");
    };
    config.originator_id_type = OriginatorIdType::Text;
    config.schema = Some("annals_test_schema".to_owned());
    let mut db = client(&config);
    db.batch_execute("DROP SCHEMA IF EXISTS annals_test_schema CASCADE")
        .expect("drop schema");
    let r = PostgresRecorder::open(&config, "PG_Schema").expect("open");
    r.create_tables().expect("again: idempotent");
    r.insert_events(&[event("s", 1, "T")]).expect("insert");
    let tables: Vec<String> = db
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'annals_test_schema' ORDER BY 1",
            &[],
        )
        .expect("tables")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "pg_schema_data_keys",
            "pg_schema_events",
            "pg_schema_outcomes",
            "pg_schema_snapshots",
            "pg_schema_tracking"
        ]
    );
    let stored: i64 = db
        .query_one(
            "SELECT count(*) FROM annals_test_schema.pg_schema_events",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(stored, 1);
    let elsewhere: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_name = 'pg_schema_events' AND table_schema <> 'annals_test_schema'",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(elsewhere, 0);
}

#[test]
fn a_role_that_may_not_create_tables_gets_the_servers_permission_denied() {
    let Some(server) = server() else {
        return annals_tests::skipped("permission_denied");
    };
    let mut db = client(&server);
    db.batch_execute(
        "DROP SCHEMA IF EXISTS annals_locked CASCADE; \
         CREATE SCHEMA annals_locked; \
         DO $$ BEGIN \
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'annals_noddl') THEN \
             CREATE ROLE annals_noddl LOGIN; \
           END IF; \
         END $$; \
         GRANT USAGE ON SCHEMA annals_locked TO annals_noddl; \
         REVOKE CREATE ON SCHEMA annals_locked FROM annals_noddl",
    )
    .expect("a schema annals_noddl may not create tables in");
    let mut config = server.clone();
    config.user = "annals_noddl".to_owned();
    config.password = None;
    config.schema = Some("annals_locked".to_owned());
    let err = PostgresRecorder::open(&config, "dogs").expect_err("may not create");
    let shown = err.report().to_string();
    assert!(
        shown.contains("permission denied for schema annals_locked"),
        "{shown}"
    );
    assert!(shown.contains("42501"), "{shown}");
}

/// Drops a schema and a role when dropped, so a failed test leaves neither.
struct DropsSchemaAndRole(PostgresConfig, &'static str, &'static str);

impl Drop for DropsSchemaAndRole {
    fn drop(&mut self) {
        let (schema, role) = (self.1, self.2);
        let _ = client(&self.0).batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; DROP ROLE IF EXISTS {role}"
        ));
    }
}

/// A schema of the test's own and a login role that may use it but not
/// create in it (both dropped first, and again when the guard drops), a
/// client of the server's owner, and the owner's settings in that schema.
fn schema_and_role(
    server: &PostgresConfig,
    schema: &'static str,
    role: &'static str,
) -> (DropsSchemaAndRole, postgres::Client, PostgresConfig) {
    let cleanup = DropsSchemaAndRole(server.clone(), schema, role);
    let mut db = client(server);
    db.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; DROP ROLE IF EXISTS {role}; \
         CREATE SCHEMA {schema}; CREATE ROLE {role} LOGIN; \
         GRANT USAGE ON SCHEMA {schema} TO {role}"
    ))
    .expect("a schema and a role that may not create in it");
    let mut owner = server.clone();
    owner.schema = Some(schema.to_owned());
    owner.originator_id_type = OriginatorIdType::Text;
    (cleanup, db, owner)
}

#[test]
fn a_role_that_does_not_own_the_tables_opens_them_with_create_table_on() {
    let Some(server) = server() else {
        return annals_tests::skipped("not_owner");
    };
    let (schema, role) = ("annals_not_owner", "annals_not_owner_service");
    let (cleanup, mut db, owner) = schema_and_role(&server, schema, role);
    // The owner creates the tables, as a migration would.
    drop(PostgresRecorder::open(&owner, "dogs").expect("the owner creates the tables"));
    // What a service writing events needs (UPDATE: writers lock the events
    // table in EXCLUSIVE mode, and tracking is an upsert); no ownership.
    db.batch_execute(&format!(
        "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {schema} TO {role}; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"
    ))
    .expect("grants");
    let mut service = owner.clone();
    service.user = role.to_owned();
    service.password = None;
    assert!(service.create_tables, "CREATE_TABLE=yes, the default");
    {
        let r = PostgresRecorder::open(&service, "dogs")
            .unwrap_or_else(|e| panic!("the service opens the owner's tables: {}", e.report()));
        r.create_tables()
            .unwrap_or_else(|e| panic!("nothing is missing: {}", e.report()));
        r.insert_events(&[event("a", 1, "T")]).expect("insert");
        assert_eq!(
            r.select_events("a", &EventQuery::all())
                .expect("select")
                .len(),
            1
        );
        r.snapshot_recorder()
            .insert_events(&[event("a", 1, "Snapshot")])
            .expect("a snapshot");
    }
    // A table that is missing is still created (by a role that may).
    db.batch_execute(&format!("DROP TABLE {schema}.dogs_snapshots"))
        .expect("drop one table");
    drop(PostgresRecorder::open(&owner, "dogs").expect("the owner opens again"));
    let back: bool = db
        .query_one(
            &format!("SELECT to_regclass('{schema}.dogs_snapshots') IS NOT NULL"),
            &[],
        )
        .expect("regclass")
        .get(0);
    assert!(back, "the missing snapshots table was created");
    drop(db);
    drop(cleanup);
}

#[test]
fn a_role_without_update_on_a_sequence_that_is_behind_is_told_to_grant_it() {
    let Some(server) = server() else {
        return annals_tests::skipped("sequence_behind_role");
    };
    let (schema, role) = ("annals_seq_behind", "annals_seq_behind_service");
    let (cleanup, mut db, owner) = schema_and_role(&server, schema, role);
    let r = PostgresRecorder::open(&owner, "dogs").expect("the owner creates the tables");
    r.insert_events(&[event("a", 1, "T"), event("a", 2, "T")])
        .expect("insert");
    drop(r);
    // The sequence set back, as after rows stored without it.
    db.batch_execute(&format!(
        "SELECT setval(pg_get_serial_sequence('{schema}.dogs_events', 'notification_id'), 1); \
         GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {schema} TO {role}; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"
    ))
    .expect("the sequence behind, and grants without UPDATE on it");
    let mut service = owner.clone();
    service.user = role.to_owned();
    service.password = None;
    let err = PostgresRecorder::open(&service, "dogs")
        .expect_err("setval needs UPDATE on the sequence")
        .report()
        .to_string();
    assert!(
        err.contains("UPDATE") && err.contains("behind") && err.contains("42501"),
        "{err}"
    );
    // With CREATE_TABLE=no the first write moves it, and says the same.
    let mut no_create = service.clone();
    no_create.create_tables = false;
    let r = PostgresRecorder::open(&no_create, "dogs").expect("opens without creating");
    let err = r
        .insert_events(&[event("b", 1, "T")])
        .expect_err("setval needs UPDATE on the sequence")
        .report()
        .to_string();
    assert!(err.contains("UPDATE") && err.contains("behind"), "{err}");
    drop(r);
    db.batch_execute(&format!(
        "GRANT UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"
    ))
    .expect("grant UPDATE");
    let r = PostgresRecorder::open(&service, "dogs")
        .unwrap_or_else(|e| panic!("opens with UPDATE: {}", e.report()));
    let ids = r.insert_events(&[event("b", 1, "T")]).expect("insert");
    assert_eq!(ids, [3], "the sequence was moved past the table's ids");
    drop(r);
    drop(db);
    drop(cleanup);
}
