//! The messages the proxy itself sends its clients, encoded by pgwire.

use bytes::{Bytes, BytesMut};
use pgwire::messages::response::{
    CommandComplete, ErrorResponse, ReadyForQuery, TransactionStatus,
};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus, SecretKey};
use pgwire::messages::PgWireBackendMessage;

fn encode(m: PgWireBackendMessage, out: &mut BytesMut) {
    // Encoding fails only past pgwire's size bounds, which these small messages never reach.
    if let Err(e) = m.encode(out) {
        tracing::error!(error = %e, "a proxy message could not be encoded");
    }
}

/// AuthenticationSASL offering SCRAM-SHA-256.
pub fn auth_sasl(out: &mut BytesMut) {
    encode(
        PgWireBackendMessage::Authentication(Authentication::SASL(vec!["SCRAM-SHA-256".into()])),
        out,
    );
}

/// AuthenticationSASLContinue / Final with `data`.
pub fn auth_sasl_step(out: &mut BytesMut, data: String, last: bool) {
    let data = Bytes::from(data);
    let a = if last {
        Authentication::SASLFinal(data)
    } else {
        Authentication::SASLContinue(data)
    };
    encode(PgWireBackendMessage::Authentication(a), out);
}

/// AuthenticationOk.
pub fn auth_ok(out: &mut BytesMut) {
    encode(
        PgWireBackendMessage::Authentication(Authentication::Ok),
        out,
    );
}

/// ParameterStatus.
pub fn parameter(out: &mut BytesMut, name: &str, value: &str) {
    encode(
        PgWireBackendMessage::ParameterStatus(ParameterStatus::new(name.into(), value.into())),
        out,
    );
}

/// BackendKeyData: the proxy's own key for the session.
pub fn backend_key(out: &mut BytesMut, pid: i32, key: i32) {
    encode(
        PgWireBackendMessage::BackendKeyData(BackendKeyData::new(pid, SecretKey::I32(key))),
        out,
    );
}

/// ReadyForQuery with `status` (`I`, `T` or `E`).
pub fn ready(out: &mut BytesMut, status: u8) {
    let status = match status {
        b'T' => TransactionStatus::Transaction,
        b'E' => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    };
    encode(
        PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(status)),
        out,
    );
}

/// ErrorResponse (severity ERROR, or FATAL when the connection ends).
pub fn error(out: &mut BytesMut, fatal: bool, code: &str, message: &str) {
    let severity = if fatal { "FATAL" } else { "ERROR" };
    let fields = vec![
        (b'S', severity.to_string()),
        (b'V', severity.to_string()),
        (b'C', code.to_string()),
        (b'M', message.to_string()),
    ];
    encode(
        PgWireBackendMessage::ErrorResponse(ErrorResponse::new(fields)),
        out,
    );
}

/// CommandComplete with `tag`.
pub fn complete(out: &mut BytesMut, tag: &str) {
    encode(
        PgWireBackendMessage::CommandComplete(CommandComplete::new(tag.into())),
        out,
    );
}

/// A message with no body (`1` ParseComplete, `2` BindComplete, `3` CloseComplete, `n`
/// NoData).
pub fn simple(out: &mut BytesMut, tag: u8) {
    use bytes::BufMut;
    out.put_u8(tag);
    out.put_i32(4);
}

/// RowDescription of text columns named `names`.
pub fn row_description(out: &mut BytesMut, names: &[&str]) {
    use pgwire::messages::data::{FieldDescription, RowDescription};
    // 25: text; -1: variable width; 0: text format.
    let fields = names
        .iter()
        .map(|n| FieldDescription::new(n.to_string(), 0, 0, 25, -1, -1, 0))
        .collect();
    encode(
        PgWireBackendMessage::RowDescription(RowDescription::new(fields)),
        out,
    );
}

/// DataRow of text values (`None`: NULL).
pub fn data_row(out: &mut BytesMut, values: &[Option<String>]) {
    use bytes::BufMut;
    use pgwire::messages::data::DataRow;
    let mut data = BytesMut::new();
    for v in values {
        match v {
            Some(v) => {
                data.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
                data.put_slice(v.as_bytes());
            }
            None => data.put_i32(-1),
        }
    }
    let count = i16::try_from(values.len()).unwrap_or(i16::MAX);
    encode(
        PgWireBackendMessage::DataRow(DataRow::new(data, count)),
        out,
    );
}
