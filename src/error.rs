//! Errors as values: every failure carries a CNI error code, a message that
//! names the problem, and optional details (the context chain).

use std::fmt;

/// CNI spec error codes (CNI spec 1.1.0, "Error" section) and gwsteer's own (>= 100).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// A kernel (netlink) operation failed.
    pub const KERNEL: u32 = 100;
    /// CHECK found objects missing or drifted.
    pub const CHECK_FAILED: u32 = 101;
    /// The state store holds something unreadable.
    pub const STATE: u32 = 102;
    /// The kernel lacks a feature the config needs.
    pub const KERNEL_FEATURE: u32 = 103;
    /// A firewall operation failed.
    pub const FIREWALL: u32 = 104;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Error {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Prefix the message with what was being done, keeping the code.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.msg = format!("{what}: {}", self.msg);
        self
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_CONFIG, msg)
    }

    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        Self::new(code::IO, format!("{what}: {err}"))
    }

    pub fn kernel(msg: impl Into<String>) -> Self {
        Self::new(code::KERNEL, msg)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "{}", self.msg)
        } else {
            write!(f, "{} ({})", self.msg, self.details)
        }
    }
}

impl std::error::Error for Error {}
