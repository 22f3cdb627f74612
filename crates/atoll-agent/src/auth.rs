//! Bearer-token checks. The token is resolved once at start from its reference and is
//! only ever compared, in constant time: never logged, echoed or put in an error.

use crate::config::ReadAccess;
use atoll_core::Secret;

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read attributes or action records.
    Read,
    /// Schedule an action.
    Write,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer …` header (401).
    Missing,
    /// A token that is not this agent's (401).
    Wrong,
    /// The agent has no token configured, so it takes no action (403).
    WritesDisabled,
}

/// The agent's token and read policy.
#[derive(Debug, Clone)]
pub struct Auth {
    token: Option<Secret>,
    reads: ReadAccess,
}

impl Auth {
    /// A checker for `token` (resolved) and `reads`.
    pub fn new(token: Option<Secret>, reads: ReadAccess) -> Auth {
        Auth { token, reads }
    }

    /// Checks the `Authorization` header's value (if any) for `access`.
    pub fn check(&self, header: Option<&str>, access: Access) -> Result<(), Denied> {
        if access == Access::Read && self.reads == ReadAccess::Open {
            return Ok(());
        }
        let Some(token) = &self.token else {
            return match access {
                Access::Write => Err(Denied::WritesDisabled),
                // Token-protected reads without a token: nobody can read.
                Access::Read => Err(Denied::WritesDisabled),
            };
        };
        let given = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(Denied::Missing)?;
        if token.matches(given.as_bytes()) {
            Ok(())
        } else {
            Err(Denied::Wrong)
        }
    }
}

/// Compares without stopping at the first difference (the length still shows).
#[cfg(test)]
mod tests {
    use super::*;

    fn auth(reads: ReadAccess) -> Auth {
        let secret = {
            std::env::set_var("ATOLL_AGENT_AUTH_TEST", "s3cret");
            atoll_core::SecretRef::Env("ATOLL_AGENT_AUTH_TEST".into())
                .resolve()
                .unwrap()
        };
        Auth::new(Some(secret), reads)
    }

    #[test]
    fn writes_need_the_token() {
        let a = auth(ReadAccess::Open);
        assert_eq!(a.check(None, Access::Write), Err(Denied::Missing));
        assert_eq!(
            a.check(Some("Bearer nope"), Access::Write),
            Err(Denied::Wrong)
        );
        assert_eq!(a.check(Some("s3cret"), Access::Write), Err(Denied::Missing));
        assert_eq!(a.check(Some("Bearer s3cret"), Access::Write), Ok(()));
        assert_eq!(a.check(None, Access::Read), Ok(()));
    }

    #[test]
    fn token_reads() {
        let a = auth(ReadAccess::Token);
        assert_eq!(a.check(None, Access::Read), Err(Denied::Missing));
        assert_eq!(a.check(Some("Bearer s3cret"), Access::Read), Ok(()));
        let none = Auth::new(None, ReadAccess::Open);
        assert_eq!(none.check(None, Access::Write), Err(Denied::WritesDisabled));
    }
}
