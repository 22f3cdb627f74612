//! Failures and what they mean as exit codes.

use std::process::ExitCode;

pub const FAILED: u8 = 1;
pub const BAD_INPUT: u8 = 2;
pub const UNHEALTHY: u8 = 3;

/// A command's failure: one line for the user, and the exit code that classifies it.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// The user asked for something invalid (flags, config, shard numbers, islands).
    pub fn input(e: impl std::fmt::Display) -> Failure {
        Failure {
            code: BAD_INPUT,
            message: e.to_string(),
        }
    }
    /// The operation was valid but could not be carried out.
    pub fn failed(e: impl std::fmt::Display) -> Failure {
        Failure {
            code: FAILED,
            message: e.to_string(),
        }
    }
    /// Bad input when `input`, else a failure.
    fn classify(input: bool, e: impl std::fmt::Display) -> Failure {
        if input {
            Failure::input(e)
        } else {
            Failure::failed(e)
        }
    }
    /// Prefixes the message with what was being done (anyhow's `context`, kept to one line).
    pub fn context(self, what: impl std::fmt::Display) -> Failure {
        Failure {
            code: self.code,
            message: format!("{what}: {}", self.message),
        }
    }
    pub fn report(self) -> ExitCode {
        eprintln!("error: {}", self.message);
        ExitCode::from(self.code)
    }
}

impl From<atoll_pg::PgError> for Failure {
    fn from(e: atoll_pg::PgError) -> Failure {
        Failure::classify(e.is_refusal(), e)
    }
}

impl From<atoll_sandbox::SandboxError> for Failure {
    fn from(e: atoll_sandbox::SandboxError) -> Failure {
        Failure::failed(e)
    }
}

impl From<atoll_migrate::MigrateError> for Failure {
    fn from(e: atoll_migrate::MigrateError) -> Failure {
        Failure::classify(e.is_input(), e)
    }
}

impl From<atoll_migrate::AllocateError> for Failure {
    fn from(e: atoll_migrate::AllocateError) -> Failure {
        Failure::classify(e.is_input(), e)
    }
}

impl From<atoll_move::MoveError> for Failure {
    fn from(e: atoll_move::MoveError) -> Failure {
        Failure::classify(e.is_refusal(), e)
    }
}

impl From<atoll_move::global_copy::GlobalCopyError> for Failure {
    fn from(e: atoll_move::global_copy::GlobalCopyError) -> Failure {
        Failure::classify(e.is_refusal(), e)
    }
}

impl From<atoll_move::RebalanceError> for Failure {
    fn from(e: atoll_move::RebalanceError) -> Failure {
        Failure::classify(e.is_refusal(), e)
    }
}
