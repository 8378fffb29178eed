//! The top-level error type and its exit codes.

use crate::pipeline::Diagnostic;

/// Everything that can end a scalepipe command unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file is invalid: exit 2, nothing was changed.
    #[error("{0}")]
    Pipeline(Box<Diagnostic>),
    /// Bad command-line usage: exit 2.
    #[error("{0}")]
    Usage(String),
    /// The workspace holds something scalepipe will not act on (an unreadable
    /// pipeline state, two pipeline files with one name): exit 2, nothing was
    /// changed.
    #[error("{0}")]
    Refused(String),
    /// `scalepipe verify` found entries that do not match their manifests: exit 1.
    #[error("{bad} store entr{} failed verification", if *bad == 1 { "y" } else { "ies" })]
    BadEntries { bad: usize },
    /// The workspace could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// One or more stage instances failed: exit 1.
    #[error("{failed} stage instance(s) failed")]
    StagesFailed { failed: usize },
    /// The run was interrupted with Ctrl-C: exit 130.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// 0 success, 1 a stage failed (or the workspace could not be written),
    /// 2 invalid pipeline or usage, 130 interrupted.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Pipeline(_) | Error::Usage(_) | Error::Refused(_) => 2,
            Error::Io { .. } | Error::StagesFailed { .. } | Error::BadEntries { .. } => 1,
            Error::Interrupted => 130,
        }
    }
}
