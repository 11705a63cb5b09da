//! Which alert rules a pipeline runs: the configured files, or the ones built in.

use std::path::{Path, PathBuf};

use ipcwatch_alerts::{Rule, RuleError};

/// The rules shipped in alerts/ipc.conf, used when the configuration names no rules.
pub const BUILTIN: &str = include_str!("../../../alerts/ipc.conf");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A missing rules path would silently switch alerting off: refuse it.
    #[error("rules: {}: no such file or folder", .0.display())]
    Missing(PathBuf),
}

/// Loads the rules at `path` (a file, or a folder of *.conf), or the built-in ones for `None`.
/// A rule with an error is logged and skipped; the others load.
pub fn load(path: Option<&Path>) -> Result<Vec<Rule>, Error> {
    let (rules, errors, from) = match path {
        Some(p) => {
            if !p.exists() {
                return Err(Error::Missing(p.to_path_buf()));
            }
            let (r, e) = ipcwatch_alerts::load(p);
            (r, e, p.display().to_string())
        }
        None => {
            let (r, e) = builtin();
            (r, e, "the built-in rules".to_string())
        }
    };
    for e in &errors {
        tracing::error!("{e} (rule skipped)");
    }
    tracing::info!(rules = rules.len(), errors = errors.len(), "loaded alert rules from {from}");
    Ok(rules)
}

/// The built-in rules, parsed.
pub fn builtin() -> (Vec<Rule>, Vec<RuleError>) {
    ipcwatch_alerts::rules::parse(BUILTIN, Path::new("<built-in ipc.conf>"))
}
