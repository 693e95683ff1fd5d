//! The command-line commands: `grade` ([`grade`]) grades a JSONL file of
//! items; `run` ([`run`]) runs one program in the sandbox, for debugging a
//! test.

pub mod grade;
pub mod run;

use std::io;
use std::path::Path;

pub use grade::{run_grade, GradeArgs};
pub use run::{run_program, RunArgs};

/// Why a command stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad options.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// "cannot read", "cannot write", …
        what: &'static str,
        /// The file concerned.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The code sandbox could not be loaded or could not start a run.
    #[error("{0}")]
    Sandbox(String),
}

pub(crate) fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CliError + 'a {
    move |source| CliError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}
