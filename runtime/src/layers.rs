//! The dependency rule, checked: every module names only modules of its own
//! layer or below (`crate::x` paths in its source, doc comments included,
//! so a doc link upwards counts too).
//!
//! Layers, bottom to top:
//! 0. `error`
//! 1. `settings`, `clock`, `env`, `cipher`, `rows`
//! 2. `domain`
//! 3. `mapper`
//! 4. `persistence`
//! 5. `repository`, `application`, `log`
//! 6. `system`
//! 7. `testing`

use std::path::Path;

const LAYERS: &[&[&str]] = &[
    &["error"],
    &["settings", "clock", "env", "cipher", "rows"],
    &["domain", "transcoding"],
    &["mapper"],
    &["persistence"],
    &["repository", "application", "log"],
    &["system"],
    &["asynchronous"],
    &["web"],
    &["testing"],
];

/// The layer of a top-level module, or of an item the crate root
/// re-exports (`crate::Error`, ...).
fn layer(name: &str) -> Option<usize> {
    let module = match name {
        "Error" | "Result" => "error",
        "Timestamp" => "clock",
        "DomainEvent" | "Aggregate" | "AggregateId" | "Event" | "Header" | "Metadata" => "domain",
        "Repository" | "Snapshots" => "repository",
        "Application" | "ApplicationBuilder" | "Persistence" | "Save" | "Verification" => {
            "application"
        }
        "recorder_contract" => "testing",
        other => other,
    };
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// `crate::name` paths in `source`.
fn references(source: &str) -> impl Iterator<Item = &str> {
    source.match_indices("crate::").filter_map(|(at, _)| {
        let rest = &source[at + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        (end > 0).then(|| &rest[..end])
    })
}

fn check(dir: &Path, top: Option<&str>, violations: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 name")
            .to_owned();
        let module = top.unwrap_or(&stem);
        if path.is_dir() {
            check(&path, Some(module), violations);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") || ["lib", "layers"].contains(&module) {
            continue;
        }
        let Some(own) = layer(module) else {
            violations.push(format!("{}: module {module} has no layer", path.display()));
            continue;
        };
        let source = std::fs::read_to_string(&path).expect("read source");
        for name in references(&source) {
            // `__private` and the macros are the crate root's own items.
            if ["__private", "aggregate", "event", "upcast", "Uuid", "json"].contains(&name) {
                continue;
            }
            match layer(name) {
                Some(theirs) if theirs <= own => {}
                Some(_) => violations.push(format!(
                    "{}: {module} (a lower layer) names crate::{name}",
                    path.display()
                )),
                None => violations.push(format!(
                    "{}: crate::{name} is in no layer (add it to LAYERS)",
                    path.display()
                )),
            }
        }
    }
}

#[test]
fn no_module_names_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    check(&src, None, &mut violations);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_check_sees_an_upward_reference() {
    let names: Vec<&str> = references("use crate::system::Signal; crate::Error").collect();
    assert_eq!(names, ["system", "Error"]);
    assert!(layer("system") > layer("persistence"));
}
