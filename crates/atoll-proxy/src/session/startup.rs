//! A session's start: TLS if the client asks and the proxy offers it, the startup packet,
//! the client limit, SCRAM-SHA-256, the admin database, the parameters and cancel key the
//! client gets; then the session runs (`mod.rs`).

use super::Session;
use crate::auth::{authenticate, AuthError};
use crate::frame::{read_startup, Startup, WireError};
use crate::messages;
use crate::prepared::ClientStatements;
use crate::shared::Shared;
use crate::stream::Stream;
use atoll_core::statement_route::SessionRoute;
use bytes::BytesMut;
use tokio::io::BufStream;
use tokio::net::TcpStream;

/// A session's cancel key, registered while the session lasts.
struct Registered<'a> {
    shared: &'a Shared,
    pid: i32,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.shared.cancels.remove(self.pid);
        let clients = &self.shared.stats.clients;
        clients.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(super) async fn session(tcp: TcpStream, shared: &Shared) -> Result<(), WireError> {
    // Unbuffered until the startup packet: no byte of a TLS handshake may be read early.
    let mut client = Stream::Plain(tcp);
    let params = loop {
        match read_startup(&mut client).await? {
            Startup::Ssl if !client.is_tls() && shared.tls.is_some() => {
                crate::frame::send(&mut client, b"S").await?;
                client = accept_tls(client, shared).await?;
            }
            // GSSAPI is not offered; TLS only when configured: libpq goes on in plain text.
            Startup::Ssl | Startup::Gss => crate::frame::send(&mut client, b"N").await?,
            Startup::Cancel { pid, key } => {
                if let Some(target) = shared.cancels.target(pid, key) {
                    if let Err(e) = crate::cancel::send(&target).await {
                        tracing::debug!(error = %e, addr = %target.addr, "cancel request not passed on");
                    }
                }
                return Ok(());
            }
            Startup::Params(p) => break p,
        }
    };
    let mut client = BufStream::new(client);
    // Held while the session lasts.
    let _slot = match &shared.clients_limit {
        Some(limit) => match limit.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                let m = "sorry, too many clients already (atoll proxy --max-clients)";
                return fatal(&mut client, "53300", m).await;
            }
        },
        None => None,
    };
    if shared.require_tls && !client.get_ref().is_tls() {
        let m = "atoll proxy accepts TLS connections only: connect with sslmode=require (or verify-ca, verify-full)";
        return fatal(&mut client, "28000", m).await;
    }
    let user = params
        .iter()
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.clone());
    let Some(user) = user else {
        return fatal(&mut client, "28000", "no user name in the startup packet").await;
    };
    match authenticate(&mut client, &shared.users, &user).await {
        Ok(()) => {}
        Err(AuthError::Failed(_)) => {
            let m = format!("password authentication failed for user \"{user}\"");
            return fatal(&mut client, "28P01", &m).await;
        }
        Err(AuthError::Wire(e)) => return Err(e),
    }
    let database = params
        .iter()
        .find(|(k, _)| k == "database")
        .map(|(_, v)| v.as_str());
    if database == Some(crate::admin::DATABASE) {
        let mut out = BytesMut::new();
        messages::auth_ok(&mut out);
        messages::parameter(&mut out, "server_version", "15.0 (atoll proxy)");
        messages::parameter(&mut out, "client_encoding", "UTF8");
        messages::ready(&mut out, b'I');
        crate::frame::send(&mut client, &out).await?;
        return crate::admin::serve(&mut client, shared).await;
    }
    let wanted = database.unwrap_or(user.as_str());
    if wanted != shared.database {
        // After authentication, as PostgreSQL: no one learns names without a password.
        let m = format!(
            "database \"{wanted}\" does not exist (this proxy serves \"{}\" and the admin database \"{}\")",
            shared.database,
            crate::admin::DATABASE
        );
        return fatal(&mut client, "3D000", &m).await;
    }
    let server_params = match shared.server_params().await {
        Ok(p) => p,
        Err(e) => return fatal(&mut client, "08006", &e).await,
    };
    let mut out = BytesMut::new();
    messages::auth_ok(&mut out);
    for (k, v) in &server_params {
        messages::parameter(&mut out, k, v);
    }
    let (pid, key) = shared.new_key();
    let cancel = shared.cancels.register(pid, key);
    shared
        .stats
        .clients
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _registered = Registered { shared, pid };
    messages::backend_key(&mut out, pid, key);
    messages::ready(&mut out, b'I');
    crate::frame::send(&mut client, &out).await?;
    let mut s = Session {
        client,
        shared,
        route: SessionRoute::default(),
        settings: Vec::new(),
        set_on_node: false,
        pinned: None,
        status: b'I',
        batch: Vec::new(),
        pending_begin: None,
        aborted: false,
        undo: None,
        rolling_back: false,
        statements: ClientStatements::default(),
        cancel,
        user,
    };
    s.run().await
}

/// The TLS handshake with a client that asked for it.
async fn accept_tls(client: Stream, shared: &Shared) -> Result<Stream, WireError> {
    match (client, &shared.tls) {
        (Stream::Plain(tcp), Some(config)) => {
            let tls = tokio_rustls::TlsAcceptor::from(config.clone())
                .accept(tcp)
                .await?;
            Ok(Stream::Accepted(Box::new(tls)))
        }
        (other, _) => Ok(other),
    }
}

pub(super) async fn fatal(
    client: &mut (impl tokio::io::AsyncWrite + Unpin),
    code: &str,
    message: &str,
) -> Result<(), WireError> {
    let mut out = BytesMut::new();
    messages::error(&mut out, true, code, message);
    crate::frame::send(client, &out).await?;
    Ok(())
}
