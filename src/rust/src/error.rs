//! One error type for the whole crate. `lib.rs` turns it into a tagged R list that
//! `R/backend.R` raises as a classed condition (`parallelly<Kind>Error`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A worker process could not be started.
    Launch,
    /// An argument that R validated still made no sense to the OS.
    InvalidArgument,
    /// Any other operating-system failure.
    System,
}

impl Kind {
    /// The class name R sees, without the `parallelly` prefix and `Error` suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Launch => "Launch",
            Kind::InvalidArgument => "InvalidArgument",
            Kind::System => "System",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
