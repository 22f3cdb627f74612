//! The PostgreSQL protocol's framing as a proxy needs it, with no I/O policy of its own:
//! the startup packet (no type byte: SSL and GSS requests, a cancel request, the startup
//! parameters), typed messages kept as raw frames to forward verbatim, and the few fields
//! a router reads (a query's text, a Parse's name and text, ReadyForQuery's status).
//! Every parser is bounded and returns an error, never panics, on any input.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt};

/// The longest startup packet accepted (PostgreSQL's own bound).
pub const MAX_STARTUP: usize = 10_000;
/// The longest message a client may send (PostgreSQL refuses past 1 GiB).
pub const MAX_MESSAGE: usize = (1 << 30) - 1;

const SSL_REQUEST: i32 = 80_877_103;
const GSS_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
const PROTOCOL_3_0: i32 = 196_608;

/// Why a peer's bytes cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes that are not the protocol.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message longer than allowed.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its announced length.
        len: usize,
        /// The bound.
        max: usize,
    },
}

/// The first packet of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// SSLRequest: the client asks for TLS.
    Ssl,
    /// GSSENCRequest.
    Gss,
    /// CancelRequest for the session with this key.
    Cancel {
        /// The process id the proxy gave the session.
        pid: i32,
        /// Its secret key.
        key: i32,
    },
    /// StartupMessage (protocol 3.0): its parameters, in order.
    Params(Vec<(String, String)>),
}

/// Parses a startup packet's body (after its length).
pub fn parse_startup(body: &[u8]) -> Result<Startup, WireError> {
    let bad = |m: &str| WireError::Malformed(format!("startup packet: {m}"));
    let code = i32_at(body, 0).ok_or_else(|| bad("shorter than its code"))?;
    match code {
        SSL_REQUEST => Ok(Startup::Ssl),
        GSS_REQUEST => Ok(Startup::Gss),
        CANCEL_REQUEST => {
            let pid = i32_at(body, 4).ok_or_else(|| bad("cancel request without a process id"))?;
            let key = i32_at(body, 8).ok_or_else(|| bad("cancel request without a key"))?;
            Ok(Startup::Cancel { pid, key })
        }
        PROTOCOL_3_0 => {
            let mut params = Vec::new();
            let mut rest = &body[4..];
            loop {
                let (name, after) =
                    cstr(rest).ok_or_else(|| bad("parameter name without its end"))?;
                if name.is_empty() {
                    return Ok(Startup::Params(params));
                }
                let (value, after) =
                    cstr(after).ok_or_else(|| bad("parameter value without its end"))?;
                params.push((name.to_string(), value.to_string()));
                rest = after;
            }
        }
        v => Err(bad(&format!(
            "protocol {}.{} (only 3.0 is spoken)",
            v >> 16,
            v & 0xffff
        ))),
    }
}

/// Reads a startup packet.
pub async fn read_startup<R: AsyncRead + Unpin>(r: &mut R) -> Result<Startup, WireError> {
    let len = r.read_i32().await?;
    let len = usize::try_from(len).unwrap_or(0);
    if !(8..=MAX_STARTUP).contains(&len) {
        return Err(WireError::TooLarge {
            len,
            max: MAX_STARTUP,
        });
    }
    let mut body = vec![0u8; len - 4];
    r.read_exact(&mut body).await?;
    parse_startup(&body)
}

/// One typed message, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The type byte.
    pub tag: u8,
    /// The body, after the length.
    pub body: Bytes,
}

impl Frame {
    /// Appends the message as it goes on the wire.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.tag);
        out.put_i32(self.body.len() as i32 + 4);
        out.put_slice(&self.body);
    }

    /// A 'Q' message's text.
    pub fn query_text(&self) -> Result<&str, WireError> {
        cstr(&self.body)
            .map(|(s, _)| s)
            .ok_or_else(|| WireError::Malformed("Query without its end".into()))
    }

    /// A 'P' (Parse) message's statement name and text.
    pub fn parse_name_and_text(&self) -> Result<(&str, &str), WireError> {
        let bad = || WireError::Malformed("Parse without its end".into());
        let (name, rest) = cstr(&self.body).ok_or_else(bad)?;
        let (text, _) = cstr(rest).ok_or_else(bad)?;
        Ok((name, text))
    }

    /// A 'Z' (ReadyForQuery) message's transaction status: `I`, `T` or `E`.
    pub fn ready_status(&self) -> Option<u8> {
        (self.tag == b'Z')
            .then(|| self.body.first().copied())
            .flatten()
    }
}

/// A typed message's header: its tag and its body's length, checked against `max`.
fn header(head: [u8; 5], max: usize) -> Result<(u8, usize), WireError> {
    let (tag, len) = (
        head[0],
        i32::from_be_bytes([head[1], head[2], head[3], head[4]]),
    );
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l >= 4)
        .ok_or_else(|| {
            WireError::Malformed(format!("message {:?} announces length {len}", tag as char))
        })?;
    if len - 4 > max {
        return Err(WireError::TooLarge { len, max });
    }
    Ok((tag, len - 4))
}

/// The whole first message in `buffered`, when it is all there: its tag and its length on
/// the wire (header included).
fn whole(buffered: &[u8], max: usize) -> Result<Option<(u8, usize)>, WireError> {
    let Some(head) = buffered.first_chunk::<5>() else {
        return Ok(None);
    };
    let (tag, want) = header(*head, max)?;
    Ok((buffered.len() - 5 >= want).then_some((tag, 5 + want)))
}

/// Reads one typed message of at most `max` bytes onto the end of `out`, as it came on the
/// wire (relayed without a copy of its own): its tag and where its body starts in `out`.
/// A message already in the reader's buffer is taken from it in one step (the common case:
/// one receive holds a whole answer); a longer one is read as it arrives.
pub async fn read_frame_into<R: AsyncBufRead + Unpin>(
    r: &mut R,
    out: &mut BytesMut,
    max: usize,
) -> Result<(u8, usize), WireError> {
    let buffered = r.fill_buf().await?;
    if let Some((tag, len)) = whole(buffered, max)? {
        let at = out.len() + 5;
        out.extend_from_slice(&buffered[..len]);
        r.consume(len);
        return Ok((tag, at));
    }
    let mut head = [0u8; 5];
    r.read_exact(&mut head).await?;
    let (tag, want) = header(head, max)?;
    out.extend_from_slice(&head);
    let at = out.len();
    // Grown as the bytes arrive, as in `read_frame`.
    let mut body = r.take(want as u64);
    while body.limit() > 0 {
        out.reserve((body.limit() as usize).min(64 << 10));
        if body.read_buf(out).await? == 0 {
            return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok((tag, at))
}

/// Reads one typed message of at most `max` bytes (from the reader's buffer in one step
/// when it is all there, as [`read_frame_into`]).
pub async fn read_frame<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Frame, WireError> {
    let buffered = r.fill_buf().await?;
    if let Some((tag, len)) = whole(buffered, max)? {
        let body = Bytes::copy_from_slice(&buffered[5..len]);
        r.consume(len);
        return Ok(Frame { tag, body });
    }
    let mut head = [0u8; 5];
    r.read_exact(&mut head).await?;
    let (tag, want) = header(head, max)?;
    // Grown as the bytes arrive: a peer that announces a large message and sends little
    // makes the proxy hold only what it sent.
    let mut body = Vec::with_capacity(want.min(64 << 10));
    let got = r.take(want as u64).read_to_end(&mut body).await?;
    if got < want {
        return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(Frame {
        tag,
        body: Bytes::from(body),
    })
}

/// Writes `bytes` and flushes: the streams are buffered, so that a message is read with
/// one system call for many, and written at once when the exchange needs it.
pub async fn send<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    w.write_all(bytes).await?;
    w.flush().await
}

/// The big-endian `i32` at `at` in `b`, if `b` is long enough.
pub fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    let s = b.get(at..at + 4)?;
    Some(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// A NUL-terminated UTF-8 string at the start of `b`, and what follows it.
fn cstr(b: &[u8]) -> Option<(&str, &[u8])> {
    let end = b.iter().position(|c| *c == 0)?;
    let s = std::str::from_utf8(&b[..end]).ok()?;
    Some((s, &b[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(params: &[(&str, &str)]) -> Vec<u8> {
        let mut b = PROTOCOL_3_0.to_be_bytes().to_vec();
        for (k, v) in params {
            b.extend_from_slice(k.as_bytes());
            b.push(0);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        b
    }

    #[test]
    fn startup_packets_are_told_apart() {
        let p = parse_startup(&startup(&[("user", "app"), ("database", "db")])).unwrap();
        assert_eq!(
            p,
            Startup::Params(vec![
                ("user".into(), "app".into()),
                ("database".into(), "db".into())
            ])
        );
        assert_eq!(
            parse_startup(&SSL_REQUEST.to_be_bytes()).unwrap(),
            Startup::Ssl
        );
        let mut c = CANCEL_REQUEST.to_be_bytes().to_vec();
        c.extend_from_slice(&7i32.to_be_bytes());
        c.extend_from_slice(&9i32.to_be_bytes());
        assert_eq!(
            parse_startup(&c).unwrap(),
            Startup::Cancel { pid: 7, key: 9 }
        );
        let e = parse_startup(&131_072i32.to_be_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("protocol 2.0"), "{e}");
        assert!(parse_startup(&startup(&[("user", "app")])[..8]).is_err());
    }

    #[tokio::test]
    async fn frames_are_bounded() {
        let mut big: &[u8] = &[b'Q', 0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut big, 1000).await,
            Err(WireError::TooLarge { .. })
        ));
        let mut neg: &[u8] = &[b'Q', 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut neg, 1000).await,
            Err(WireError::Malformed(_))
        ));
        let mut ok: &[u8] = &[b'Q', 0, 0, 0, 7, b'a', b'b', 0];
        let f = read_frame(&mut ok, 1000).await.unwrap();
        assert_eq!(f.query_text().unwrap(), "ab");
        let mut out = BytesMut::new();
        f.encode(&mut out);
        assert_eq!(&out[..], &[b'Q', 0, 0, 0, 7, b'a', b'b', 0]);
        // Read onto the end of a buffer: the same bytes, the body's place.
        let mut two: &[u8] = &[b'Q', 0, 0, 0, 7, b'a', b'b', 0, b'Z', 0, 0, 0, 5, b'I'];
        let mut out = BytesMut::from(&b"x"[..]);
        assert_eq!(
            read_frame_into(&mut two, &mut out, 1000).await.unwrap(),
            (b'Q', 6)
        );
        assert_eq!(
            read_frame_into(&mut two, &mut out, 1000).await.unwrap(),
            (b'Z', 14)
        );
        assert_eq!(&out[1..9], &[b'Q', 0, 0, 0, 7, b'a', b'b', 0]);
        assert_eq!(out[14], b'I');
        // A message the reader's buffer does not hold whole is read as it arrives: the
        // same bytes, the same places.
        let bytes: &[u8] = &[b'Q', 0, 0, 0, 7, b'a', b'b', 0, b'Z', 0, 0, 0, 5, b'I'];
        for capacity in [1, 3, 6, 9] {
            let mut piecewise = tokio::io::BufReader::with_capacity(capacity, bytes);
            let mut again = BytesMut::from(&b"x"[..]);
            let first = read_frame_into(&mut piecewise, &mut again, 1000)
                .await
                .unwrap();
            let second = read_frame(&mut piecewise, 1000).await.unwrap();
            assert_eq!((first, &again[1..]), ((b'Q', 6), &bytes[..8]));
            assert_eq!((second.tag, &second.body[..]), (b'Z', &b"I"[..]));
        }
        let mut short: &[u8] = &[b'D', 0, 0, 0, 9, 1];
        assert!(read_frame_into(&mut short, &mut out, 1000).await.is_err());
        let mut big: &[u8] = &[b'D', 0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame_into(&mut big, &mut out, 1000).await,
            Err(WireError::TooLarge { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_startup(&bytes);
            let f = Frame { tag: bytes.first().copied().unwrap_or(b'Q'), body: Bytes::from(bytes.clone()) };
            let _ = f.query_text();
            let _ = f.parse_name_and_text();
            let _ = f.ready_status();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut r: &[u8] = &bytes;
            let _ = rt.block_on(read_frame(&mut r, 1 << 20));
            let mut r: &[u8] = &bytes;
            let _ = rt.block_on(read_startup(&mut r));
            let mut r: &[u8] = &bytes;
            let mut out = BytesMut::new();
            let _ = rt.block_on(read_frame_into(&mut r, &mut out, 1 << 20));
        }
    }
}
