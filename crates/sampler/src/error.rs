//! Why a collector failed, fell back to text, or read less than it should have.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call failed and nothing replaced what it reads.
    #[error("{call} failed ({source})")]
    Call { call: &'static str, source: io::Error },
    /// A call failed and the /proc text answered instead (a note, not a failure).
    #[error("{call} failed ({source}); read the text instead")]
    FellBack { call: &'static str, source: io::Error },
    /// A call failed and so did its /proc fallback.
    #[error("{call} failed ({source}), and {fallback}")]
    Failed { call: &'static str, source: io::Error, fallback: Box<Error> },
    /// The kernel counts objects but `*_STAT_ANY` finds none: a kernel before 4.17.
    #[error("*_STAT_ANY found no objects although some exist (kernel < 4.17?): objects read from text")]
    NoStatAny,
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot read {}: not a regular file", path.display())]
    NotRegular { path: PathBuf },
    #[error("cannot read {}: larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{}: {reason}", path.display())]
    Parse { path: PathBuf, reason: crate::procfs::ParseError },
    #[error("{0}")]
    Incomplete(&'static str),
    /// More than one of the above, in the order they happened.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<Error>),
}
