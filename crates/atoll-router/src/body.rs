//! Request bodies: held in memory for a possible re-send when small enough and while the
//! global budget has room, else streamed through untouched. The budget is a semaphore of
//! bytes taken without waiting, so the router never holds more than it, never blocks on
//! it and never answers 413 because of it.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Body, Frame, Incoming};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Errors of bodies in flight.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type the router sends and answers with.
pub type RouterBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A request body, ready to send.
pub enum Prepared {
    /// Held whole: can be sent again. The permit returns its bytes to the budget on drop.
    Held {
        /// The bytes.
        bytes: Bytes,
        /// Its share of the budget (`None` for an empty body).
        permit: Option<OwnedSemaphorePermit>,
    },
    /// Streamed: can be sent once.
    Streaming(Option<RouterBody>),
}

/// Why a body was streamed rather than held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamReason {
    /// Larger than the per-request cap.
    TooLarge,
    /// The budget had no room.
    BudgetFull,
}

impl Prepared {
    /// A body for one attempt; `None` when a streamed body was already sent.
    pub fn attempt(&mut self) -> Option<RouterBody> {
        match self {
            Prepared::Held { bytes, .. } => Some(full(bytes.clone())),
            Prepared::Streaming(b) => b.take(),
        }
    }

    /// Whether it can be sent again.
    pub fn replayable(&self) -> bool {
        matches!(self, Prepared::Held { .. })
    }
}

/// A body of these bytes.
pub fn full(bytes: Bytes) -> RouterBody {
    Full::new(bytes).map_err(|e| match e {}).boxed_unsync()
}

/// Prepares `body`: held when its size is known to be at most `limit`, or unknown and it
/// ends within `limit`, and the budget has room; streamed otherwise (with what was read
/// already sent first). The error is the client's body failing while read.
pub async fn prepare(
    body: Incoming,
    limit: u64,
    budget: &Arc<Semaphore>,
) -> Result<(Prepared, Option<StreamReason>), hyper::Error> {
    let hint = body.size_hint();
    if hint.exact() == Some(0) {
        return Ok((
            Prepared::Held {
                bytes: Bytes::new(),
                permit: None,
            },
            None,
        ));
    }
    let want = match hint.exact() {
        Some(n) if n > limit => {
            return Ok((stream(body, Vec::new(), None), Some(StreamReason::TooLarge)))
        }
        Some(n) => n,
        None => limit,
    };
    let Ok(permit) = budget
        .clone()
        .try_acquire_many_owned(want.min(u32::MAX as u64) as u32)
    else {
        return Ok((
            stream(body, Vec::new(), None),
            Some(StreamReason::BudgetFull),
        ));
    };
    let mut body = body;
    let mut held = BytesMut::new();
    let mut read: Vec<Frame<Bytes>> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Some(data) = frame.data_ref() {
            if held.len() as u64 + data.len() as u64 > want {
                read.push(frame);
                // Over the cap: what was held goes first, then the rest as it comes.
                let mut first = vec![Frame::data(held.freeze())];
                first.append(&mut read);
                return Ok((
                    stream(body, first, Some(permit)),
                    Some(StreamReason::TooLarge),
                ));
            }
            held.extend_from_slice(data);
        }
        // Trailers of a held body are dropped: cells get the body with a length.
    }
    Ok((
        Prepared::Held {
            bytes: held.freeze(),
            permit: Some(permit),
        },
        None,
    ))
}

/// The frames already read, then the rest of `body`; `permit` (the bytes read) is kept
/// until the stream is dropped.
fn stream(
    body: Incoming,
    first: Vec<Frame<Bytes>>,
    permit: Option<OwnedSemaphorePermit>,
) -> Prepared {
    let head = futures::stream::iter(first.into_iter().map(Ok::<_, BoxError>));
    let rest = BodyStream::new(body).map(move |f| {
        let _held = &permit;
        f.map_err(|e| Box::new(e) as BoxError)
    });
    Prepared::Streaming(Some(StreamBody::new(head.chain(rest)).boxed_unsync()))
}
