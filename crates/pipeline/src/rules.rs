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
    /// A rule that does not parse would vanish with its raised alert, unresolved: the
    /// whole set is refused, and a running daemon keeps the rules it has.
    #[error("rules: {} rule error(s) in {}: {}{}", .errors.len(), .path.display(), .errors[0], if .errors.len() > 1 { " (and more: ipcwatch check-alerts lists them all)" } else { "" })]
    Invalid { path: PathBuf, errors: Vec<RuleError> },
    /// A rules path that holds no rule (an empty folder) would switch alerting off unseen.
    #[error("rules: {} holds no alert rule (set [alerts] enabled = false to run without alerts)", .0.display())]
    Empty(PathBuf),
}

/// Loads the rules at `path` (a file, or a folder of *.conf), or the built-in ones for `None`.
/// Any rule error refuses the whole set, and so does a path with no rule at all.
pub fn load(path: Option<&Path>) -> Result<Vec<Rule>, Error> {
    let (rules, errors, from) = match path {
        Some(p) => {
            if !p.exists() {
                return Err(Error::Missing(p.to_path_buf()));
            }
            let (r, e) = ipcwatch_alerts::load(p);
            (r, e, p.to_path_buf())
        }
        None => {
            let (r, e) = builtin();
            (r, e, PathBuf::from("<built-in ipc.conf>"))
        }
    };
    if !errors.is_empty() {
        for e in &errors {
            tracing::error!("{e}");
        }
        return Err(Error::Invalid { path: from, errors });
    }
    if rules.is_empty() {
        return Err(Error::Empty(from));
    }
    tracing::info!(rules = rules.len(), "loaded alert rules from {}", from.display());
    Ok(rules)
}

/// The built-in rules, parsed.
pub fn builtin() -> (Vec<Rule>, Vec<RuleError>) {
    ipcwatch_alerts::rules::parse(BUILTIN, Path::new("<built-in ipc.conf>"))
}
