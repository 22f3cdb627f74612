//! Clients prove their password with SCRAM-SHA-256 (pgwire's server side of it). The proxy
//! keeps only a salted form of each configured password; an unknown user goes through the
//! same exchange against a random secret, so the refusal never says which part was wrong.

use crate::frame::{read_frame, Frame, WireError};
use crate::messages;
use atoll_core::Secret;
use bytes::BytesMut;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramSecret, ScramServerAuth};
use pgwire::messages::startup::PasswordMessageFamily;
use rand::RngCore;
use std::collections::HashMap;
use tokio::io::{AsyncBufRead, AsyncWrite};

/// PostgreSQL's default SCRAM iteration count.
const ITERATIONS: usize = 4096;
/// A SASL message is small; anything longer is refused.
const MAX_SASL: usize = 8192;

/// The users a proxy accepts: name → salt and salted password.
pub struct Users {
    salted: HashMap<String, (Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&String> = self.salted.keys().collect();
        f.debug_struct("Users").field("names", &names).finish()
    }
}

fn salt() -> Vec<u8> {
    let mut s = vec![0u8; 16];
    rand::thread_rng().fill_bytes(&mut s);
    s
}

impl Users {
    /// Salts each user's password once.
    pub fn new(list: &[(String, Secret)]) -> Users {
        let salted = list
            .iter()
            .map(|(name, pw)| {
                let s = salt();
                let salted = gen_salted_password(pw.expose(), &s, ITERATIONS);
                (name.clone(), (s, salted))
            })
            .collect();
        Users { salted }
    }

    fn secret(&self, user: &str) -> ScramSecret {
        let (salt, salted_password) = match self.salted.get(user) {
            Some((s, p)) => (s.clone(), p.clone()),
            // Nobody knows this password: the exchange fails like a wrong one.
            None => {
                let s = salt();
                let p = gen_salted_password(&hex(&salt()), &s, ITERATIONS);
                (s, p)
            }
        };
        ScramSecret::SaltedPassword {
            salt,
            salted_password,
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Why a client was not let in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The proof did not match (or the user is unknown: the same answer).
    #[error("password authentication failed for user \"{0}\"")]
    Failed(String),
    /// The client broke the exchange.
    #[error(transparent)]
    Wire(#[from] WireError),
}

fn sasl_body(f: &Frame, first: bool) -> Result<Vec<u8>, WireError> {
    let bad = |m: String| WireError::Malformed(format!("SASL: {m}"));
    if f.tag != b'p' {
        return Err(bad(format!(
            "expected a password message, got {:?}",
            f.tag as char
        )));
    }
    let raw = PasswordMessageFamily::Raw(BytesMut::from(&f.body[..]));
    if first {
        let m = raw
            .into_sasl_initial_response()
            .map_err(|e| bad(e.to_string()))?;
        if m.auth_method != "SCRAM-SHA-256" {
            return Err(bad(format!(
                "mechanism {} (only SCRAM-SHA-256)",
                m.auth_method
            )));
        }
        Ok(m.data.map(|d| d.to_vec()).unwrap_or_default())
    } else {
        let m = raw.into_sasl_response().map_err(|e| bad(e.to_string()))?;
        Ok(m.data.to_vec())
    }
}

/// The SCRAM-SHA-256 exchange with a client that said it is `user`; on success the
/// server's final message is sent (the caller sends AuthenticationOk).
pub async fn authenticate<S: AsyncBufRead + AsyncWrite + Unpin>(
    stream: &mut S,
    users: &Users,
    user: &str,
) -> Result<(), AuthError> {
    let mut out = BytesMut::new();
    messages::auth_sasl(&mut out);
    crate::frame::send(stream, &out)
        .await
        .map_err(WireError::from)?;
    let first = sasl_body(&read_frame(stream, MAX_SASL).await?, true)?;
    let failed = || AuthError::Failed(user.to_string());
    let server = ScramServerAuth::new();
    let (server_first, waiting) = server
        .on_client_first_message_with_secret(&first, users.secret(user))
        .map_err(|_| failed())?;
    out.clear();
    messages::auth_sasl_step(&mut out, server_first, false);
    crate::frame::send(stream, &out)
        .await
        .map_err(WireError::from)?;
    let last = sasl_body(&read_frame(stream, MAX_SASL).await?, false)?;
    let server_final = waiting
        .on_client_final_message(&last)
        .map_err(|_| failed())?;
    out.clear();
    messages::auth_sasl_step(&mut out, server_final, true);
    crate::frame::send(stream, &out)
        .await
        .map_err(WireError::from)?;
    Ok(())
}
