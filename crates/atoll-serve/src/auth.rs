//! Who may act: the write tokens, resolved once at start and only ever compared (in
//! constant time, [`atoll_core::Secret::matches`]); never logged, echoed or recorded. The
//! action log records the token's name.

use crate::config::WriteToken;
use crate::error::ServeError;
use atoll_core::Secret;
use axum::http::{header, HeaderMap, StatusCode};

/// The resolved write tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Vec<(String, Secret)>);

/// Why a request may not act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The server has no write token: it takes no action.
    Disabled,
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A token that is none of the server's.
    Wrong,
}

impl Denied {
    /// The answer's status and message (which never says how close a wrong token was).
    pub fn answer(self) -> (StatusCode, &'static str) {
        match self {
            Denied::Disabled => (
                StatusCode::FORBIDDEN,
                "actions are disabled: start atoll serve with --write-token",
            ),
            Denied::Missing => (
                StatusCode::UNAUTHORIZED,
                "authorization: a write token is needed (Authorization: Bearer <token>)",
            ),
            Denied::Wrong => (
                StatusCode::UNAUTHORIZED,
                "authorization: the write token is not accepted",
            ),
        }
    }
}

impl Tokens {
    /// Resolves every reference now; the error names the reference, not the token.
    pub fn resolve(tokens: &[WriteToken]) -> Result<Tokens, ServeError> {
        tokens
            .iter()
            .map(|t| match t.secret.resolve() {
                Ok(s) if s.expose().len() >= 16 => Ok((t.name.clone(), s)),
                Ok(_) => Err(ServeError::Token(format!(
                    "write token {} ({}): shorter than 16 characters",
                    t.name, t.secret
                ))),
                Err(e) => Err(ServeError::Token(format!("write token {}: {e}", t.name))),
            })
            .collect::<Result<_, _>>()
            .map(Tokens)
    }

    /// The name of the token `headers` carry.
    pub fn check(&self, headers: &HeaderMap) -> Result<String, Denied> {
        if self.0.is_empty() {
            return Err(Denied::Disabled);
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(Denied::Missing)?;
        // Every token is compared, so the time taken does not say which one was close.
        let mut found = None;
        for (name, secret) in &self.0 {
            if secret.matches(given.as_bytes()) && found.is_none() {
                found = Some(name.clone());
            }
        }
        found.ok_or(Denied::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn a_token_names_its_holder_and_anything_else_is_refused() {
        std::env::set_var("ATOLL_SERVE_AUTH_TEST_A", "aaaaaaaaaaaaaaaaaaaa");
        std::env::set_var("ATOLL_SERVE_AUTH_TEST_B", "bbbbbbbbbbbbbbbbbbbb");
        std::env::set_var("ATOLL_SERVE_AUTH_TEST_SHORT", "short");
        let t = |s: &str| s.parse::<WriteToken>().unwrap();
        let tokens = Tokens::resolve(&[
            t("alice=env:ATOLL_SERVE_AUTH_TEST_A"),
            t("env:ATOLL_SERVE_AUTH_TEST_B"),
        ])
        .unwrap();
        assert_eq!(
            tokens.check(&headers("Bearer aaaaaaaaaaaaaaaaaaaa")),
            Ok("alice".into())
        );
        assert_eq!(
            tokens.check(&headers("Bearer bbbbbbbbbbbbbbbbbbbb")),
            Ok("operator".into())
        );
        assert_eq!(tokens.check(&headers("Bearer aaaa")), Err(Denied::Wrong));
        assert_eq!(tokens.check(&headers("Basic aaaa")), Err(Denied::Missing));
        assert_eq!(tokens.check(&HeaderMap::new()), Err(Denied::Missing));
        assert_eq!(
            Tokens::default().check(&HeaderMap::new()),
            Err(Denied::Disabled)
        );
        let e = Tokens::resolve(&[t("env:ATOLL_SERVE_AUTH_TEST_SHORT")]).unwrap_err();
        assert!(e.to_string().contains("shorter than 16"), "{e}");
        assert!(!e.to_string().contains("short\""), "{e}");
        let e = Tokens::resolve(&[t("env:ATOLL_SERVE_AUTH_TEST_UNSET")]).unwrap_err();
        assert!(e.to_string().contains("not set"), "{e}");
    }
}
