//! The application's settings: the process environment, then the flags.

use std::collections::HashMap;

use annals::env::Env;
use annals::{Application, ApplicationBuilder};

use crate::args::Global;
use crate::{CliError, Result};

/// The application's name and every variable it is configured with.
#[derive(Debug)]
pub(crate) struct Settings {
    app: String,
    vars: HashMap<String, String>,
}

impl Settings {
    /// The environment, overridden by `global`'s flags (`--store`,
    /// `--sqlite`, `--postgres`, `--mysql`, `--object`, `--umadb`, then each `--set`).
    pub(crate) fn new(global: &Global) -> Result<Self> {
        let app = global.app.clone().ok_or_else(|| {
            CliError::Usage(
                "which application? Name it with --app NAME (or ANNALS_APP): its tables are named after it"
                    .into(),
            )
        })?;
        let mut overrides: Vec<(String, String)> = Vec::new();
        let mut set = |name: &str, value: &str| overrides.push((name.into(), value.into()));
        if let Some(store) = &global.store {
            set("PERSISTENCE_MODULE", store);
        }
        if let Some(file) = &global.sqlite {
            set("PERSISTENCE_MODULE", "sqlite");
            set("SQLITE_DBNAME", file);
        }
        if let Some(dbname) = &global.postgres {
            set("PERSISTENCE_MODULE", "postgres");
            set("POSTGRES_DBNAME", dbname);
        }
        if let Some(dbname) = &global.mysql {
            set("PERSISTENCE_MODULE", "mysql");
            set("MYSQL_DBNAME", dbname);
        }
        if let Some(location) = &global.object {
            set("PERSISTENCE_MODULE", "object");
            set("OBJECT_STORE_LOCATION", location);
        }
        if let Some(uri) = &global.umadb {
            set("PERSISTENCE_MODULE", "umadb");
            set("UMADB_URI", uri);
        }
        for pair in &global.set {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| CliError::Usage(format!("--set {pair:?}: expected NAME=VALUE")))?;
            if name.is_empty() {
                return Err(CliError::Usage(format!(
                    "--set {pair:?}: the name is empty"
                )));
            }
            overrides.push((name.into(), value.into()));
        }
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        let prefix = Env::prefix_for(&app);
        for (name, value) in overrides {
            // A flag wins over the environment, prefixed names included.
            vars.remove(&format!("{prefix}_{name}"));
            vars.insert(name, value);
        }
        Ok(Self { app, vars })
    }

    /// These settings with `overrides` winning (prefixed names too), as
    /// a flag's would.
    pub(crate) fn overridden(&self, overrides: &[(&str, &str)]) -> Self {
        let mut vars = self.vars.clone();
        let prefix = Env::prefix_for(&self.app);
        for (name, value) in overrides {
            vars.remove(&format!("{prefix}_{name}"));
            vars.insert((*name).to_owned(), (*value).to_owned());
        }
        Self {
            app: self.app.clone(),
            vars,
        }
    }

    /// The application's name.
    pub(crate) fn app(&self) -> &str {
        &self.app
    }

    /// The settings as the library reads them.
    pub(crate) fn env(&self) -> Env {
        Env::from_map(&self.app, self.vars.clone())
    }

    /// A builder with these settings.
    pub(crate) fn builder(&self) -> Result<ApplicationBuilder> {
        Ok(Application::builder(&self.app).with_env(&self.env())?)
    }

    /// The application (events only).
    pub(crate) fn open(&self) -> Result<Application> {
        Ok(self.builder()?.build()?)
    }

    /// The application with its snapshot store.
    pub(crate) fn open_with_snapshots(&self) -> Result<Application> {
        Ok(self.builder()?.snapshotting(true).build()?)
    }
}

/// Whether a setting's value must never be shown.
pub(crate) fn is_secret(name: &str) -> bool {
    ["KEY", "PASSWORD", "SECRET", "TOKEN"]
        .iter()
        .any(|word| name.contains(word))
}
