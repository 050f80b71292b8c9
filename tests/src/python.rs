//! The Python interpreters of the interop tests, and running their
//! scripts: the venvs `.ci/python` (eventsourcing 9.5.6) and `.ci/django`
//! (a Django project with eventsourcing_django) make, named by an
//! environment variable.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The interpreter the variable `var` names, or `None`: said as skipped
/// (`what` names the tests), and a failure in CI, where `.ci/run` sets it.
///
/// ```
/// // Unset outside CI: the tests that need it skip.
/// if std::env::var_os("CI").is_none() && std::env::var_os("ANNALS_NO_SUCH_PYTHON").is_none() {
///     assert!(annals_tests::python::interpreter("ANNALS_NO_SUCH_PYTHON", "nothing").is_none());
/// }
/// ```
pub fn interpreter(var: &str, what: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{what} must run in CI: set {var} (.ci/run does)"
            );
            crate::skipped(&format!("{what} ({var} is not set)"));
            None
        }
    }
}

/// Runs `python script args` in `dir` with only `PATH` and `env` in its
/// environment (the settings both sides share, nothing of the tests').
pub fn run<'a>(
    python: &Path,
    dir: &str,
    script: &str,
    args: &[&str],
    env: impl IntoIterator<Item = &'a (String, String)>,
) -> Output {
    Command::new(python)
        .arg(script)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.into_iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap_or_else(|e| panic!("run {} {script}: {e}", python.display()))
}

/// [`run`], which must succeed: the JSON it prints.
pub fn json<'a>(
    python: &Path,
    dir: &str,
    script: &str,
    args: &[&str],
    env: impl IntoIterator<Item = &'a (String, String)>,
) -> serde_json::Value {
    let output = run(python, dir, script, args, env);
    assert!(
        output.status.success(),
        "python {script} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{script} {args:?} prints JSON: {e}"))
}
