//! Compile-time checks of the macros: every misuse is an error that points
//! at the offending code (`tests/ui/fail`), and correct uses compile and run
//! (`tests/ui/pass`). Regenerate the expected output with
//! `TRYBUILD=overwrite cargo test -p annals-tests --test ui` and review it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
