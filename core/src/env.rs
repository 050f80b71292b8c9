//! Settings read from environment variables.
//!
//! The names are the Python eventsourcing library's. Each may be given with
//! the application's upper-cased name as a prefix, which wins:
//! `TRAININGSCHOOL_PERSISTENCE_MODULE` over `PERSISTENCE_MODULE`.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The former copy of `settings::PERSISTENCE_MODULE.name`, kept (hidden)
/// so that code written against it still compiles.
#[doc(hidden)]
pub const PERSISTENCE_MODULE: &str = crate::settings::PERSISTENCE_MODULE.name;

/// Reads settings for one application, from the process environment or
/// from a given map. `Debug` shows the names of the settings, never their
/// values (keys and passwords are among them).
///
/// ```
/// use std::time::Duration;
/// use annals_core::env::Env;
///
/// let env = Env::from_map("TrainingSchool", [
///     ("SQLITE_DBNAME", "all.db"),
///     ("TRAININGSCHOOL_SQLITE_DBNAME", "school.db"), // the prefixed name wins
///     ("SQLITE_LOCK_TIMEOUT", "2.5"),
///     ("IS_SNAPSHOTTING_ENABLED", "yes"),
///     ("AGGREGATE_CACHE_MAXSIZE", "many"),
/// ]);
/// assert_eq!(env.get("SQLITE_DBNAME"), Some(("TRAININGSCHOOL_SQLITE_DBNAME".into(), "school.db".into())));
/// assert_eq!(env.seconds("SQLITE_LOCK_TIMEOUT")?, Some(Duration::from_millis(2500)));
/// assert_eq!(env.flag("IS_SNAPSHOTTING_ENABLED")?, Some(true));
/// assert_eq!(env.parse::<u32>("POSTGRES_PORT")?, None); // unset
/// assert!(env.parse::<usize>("AGGREGATE_CACHE_MAXSIZE").is_err()); // names the variable
///
/// // Applications read theirs with `ApplicationBuilder::with_env(&env)`,
/// // or from the process environment: `Env::from_process("TrainingSchool")`.
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Env {
    prefix: String,
    /// Given values: they win over the process environment's.
    vars: Option<HashMap<String, String>>,
    /// Whether the process environment is read (for what `vars` lacks).
    process: bool,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Option<Vec<&String>> = self.vars.as_ref().map(|v| v.keys().collect());
        if let Some(names) = &mut names {
            names.sort();
        }
        f.debug_struct("Env")
            .field("prefix", &self.prefix)
            .field("names", &names)
            .finish()
    }
}

impl Env {
    /// Settings of application `app_name` from the process environment.
    pub fn from_process(app_name: &str) -> Self {
        Self {
            prefix: prefix_of(app_name),
            vars: None,
            process: true,
        }
    }

    /// Settings of application `app_name` from `vars` alone (the process
    /// environment is not read).
    pub fn from_map<I, K, V>(app_name: &str, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            process: false,
            ..Self::over_process(app_name, vars)
        }
    }

    /// Settings of application `app_name` from the process environment
    /// with `vars` over it, as Python's `Application(env={...})` merges
    /// them: a name in `vars` wins over the same name in the process
    /// environment (and, as always, a prefixed name over a bare one).
    ///
    /// ```
    /// use annals_core::env::Env;
    ///
    /// let env = Env::over_process("School", [("PERSISTENCE_MODULE", "sqlite")]);
    /// assert_eq!(env.get("PERSISTENCE_MODULE").map(|(_, v)| v).as_deref(), Some("sqlite"));
    /// // What is not given is the process's.
    /// let path = std::env::var("PATH").ok().filter(|p| !p.is_empty());
    /// assert_eq!(env.get("PATH").map(|(_, v)| v), path);
    ///
    /// let given = Env::over_process("School", [("PATH", "/given")]);
    /// assert_eq!(given.get("PATH").map(|(_, v)| v).as_deref(), Some("/given"));
    /// ```
    pub fn over_process<I, K, V>(app_name: &str, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            prefix: prefix_of(app_name),
            vars: Some(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
            process: true,
        }
    }

    fn lookup(&self, key: &str) -> Option<String> {
        self.vars
            .as_ref()
            .and_then(|vars| vars.get(key).cloned())
            .or_else(|| self.process.then(|| std::env::var(key).ok()).flatten())
    }

    /// The prefix of this application's names: `SCHOOL` for "School", so
    /// `SCHOOL_CIPHER_KEY` wins over `CIPHER_KEY`.
    ///
    /// ```
    /// assert_eq!(annals_core::env::Env::from_map("Training-School", [("A", "1")]).prefix(), "TRAININGSCHOOL");
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The prefix that application `app_name`'s names take (as
    /// [`prefix`](Self::prefix), without an environment to read).
    ///
    /// ```
    /// assert_eq!(annals_core::env::Env::prefix_for("Dog School"), "DOGSCHOOL");
    /// ```
    pub fn prefix_for(app_name: &str) -> String {
        prefix_of(app_name)
    }

    /// The name `var` was found under (the prefixed name first) and its
    /// value. Empty values count as unset.
    pub fn get(&self, var: &str) -> Option<(String, String)> {
        let prefixed = format!("{}_{var}", self.prefix);
        [prefixed, var.to_owned()].into_iter().find_map(|key| {
            self.lookup(&key)
                .filter(|v| !v.is_empty())
                .map(|v| (key, v))
        })
    }

    /// The value of `var` parsed as `T`; a value that does not parse is an
    /// error naming the variable.
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the variable as found (prefixed or not),
    /// when the value does not parse.
    pub fn parse<T>(&self, var: &str) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.get(var)
            .map(|(key, value)| {
                value
                    .trim()
                    .parse()
                    .map_err(|e| Error::config(key, format!("cannot parse {value:?}: {e}")))
            })
            .transpose()
    }

    /// The value of `var` read as a number of seconds (integer or decimal,
    /// not negative); a bad value is an error naming the variable.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the value is not a number, or is negative or
    /// too large.
    pub fn seconds(&self, var: &str) -> Result<Option<std::time::Duration>> {
        let Some(secs) = self.parse::<f64>(var)? else {
            return Ok(None);
        };
        std::time::Duration::try_from_secs_f64(secs)
            .map(Some)
            .map_err(|_| {
                let name = self
                    .get(var)
                    .map_or_else(|| var.to_owned(), |(name, _)| name);
                Error::config(
                    name,
                    format!("{secs} is not a number of seconds (0 or more)"),
                )
            })
    }

    /// The value of `var` read as a yes/no flag (`y`, `yes`, `t`, `true`,
    /// `on`, `1` and their opposites, as the Python library reads them).
    ///
    /// # Errors
    ///
    /// [`Error::Config`], naming the variable, for any other value.
    pub fn flag(&self, var: &str) -> Result<Option<bool>> {
        self.get(var)
            .map(
                |(key, value)| match value.trim().to_ascii_lowercase().as_str() {
                    "y" | "yes" | "t" | "true" | "on" | "1" => Ok(true),
                    "n" | "no" | "f" | "false" | "off" | "0" => Ok(false),
                    _ => Err(Error::config(
                        key,
                        format!("{value:?} is not a yes/no value"),
                    )),
                },
            )
            .transpose()
    }
}

fn prefix_of(app_name: &str) -> String {
    app_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<String>()
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_name_wins_and_empty_counts_as_unset() {
        let env = Env::from_map(
            "TrainingSchool",
            [
                ("PERSISTENCE_MODULE", "memory"),
                ("TRAININGSCHOOL_PERSISTENCE_MODULE", "sqlite"),
                ("SQLITE_DBNAME", "a.db"),
                ("TRAININGSCHOOL_SQLITE_DBNAME", ""),
            ],
        );
        assert_eq!(
            env.get("PERSISTENCE_MODULE"),
            Some(("TRAININGSCHOOL_PERSISTENCE_MODULE".into(), "sqlite".into()))
        );
        assert_eq!(
            env.get("SQLITE_DBNAME"),
            Some(("SQLITE_DBNAME".into(), "a.db".into()))
        );
        assert_eq!(env.get("POSTGRES_HOST"), None);
    }

    #[test]
    fn debug_shows_names_not_values() {
        let env = Env::from_map(
            "App",
            [
                ("CIPHER_KEY", "SECRETKEY"),
                ("POSTGRES_PASSWORD", "hunter2"),
            ],
        );
        let shown = format!("{env:?}");
        assert!(
            shown.contains("CIPHER_KEY") && shown.contains("POSTGRES_PASSWORD"),
            "{shown}"
        );
        assert!(
            !shown.contains("SECRETKEY") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let env = Env::from_map("App", [("APP_N", "x1"), ("F", "maybe")]);
        let err = env.parse::<u32>("N").unwrap_err().to_string();
        assert!(err.contains("APP_N") && err.contains("x1"), "{err}");
        let err = env.flag("F").unwrap_err().to_string();
        assert!(err.contains("F:") && err.contains("maybe"), "{err}");
        assert_eq!(
            Env::from_map("App", [("F", "Yes")]).flag("F").unwrap(),
            Some(true)
        );
    }
}
