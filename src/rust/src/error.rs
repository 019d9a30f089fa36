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
    /// A host name that does not resolve.
    Dns,
    /// A host that refuses or cannot be reached.
    Connect,
    /// A wait that ran out of time.
    Timeout,
    /// A host key that is unknown, changed, or cannot be checked.
    HostKey,
    /// Authentication was refused.
    Auth,
    /// Authentication was refused, and the host would take a password or answers to
    /// prompts, which only the external client can give (R sees an Auth error with the
    /// extra class `parallellyAuthPromptError`).
    AuthPrompt,
    /// The SSH handshake found no algorithm in common with the host where the user's policy
    /// allows algorithms libssh2 lacks: the external client may connect (R sees an Ssh
    /// error with the extra class `parallellyNoCommonAlgorithmError`).
    NoCommonAlgorithm,
    /// The SSH connection failed or was lost.
    Ssh,
}

impl Kind {
    /// The class name R sees, without the `parallelly` prefix and `Error` suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Launch => "Launch",
            Kind::InvalidArgument => "InvalidArgument",
            Kind::System => "System",
            Kind::Dns => "Dns",
            Kind::Connect => "Connect",
            Kind::Timeout => "Timeout",
            Kind::HostKey => "HostKey",
            Kind::Auth => "Auth",
            Kind::AuthPrompt => "AuthPrompt",
            Kind::NoCommonAlgorithm => "NoCommonAlgorithm",
            Kind::Ssh => "Ssh",
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
