//! The API's errors: a status and a JSON body `{"error": {"code", "message", "field"?}}`
//! (plus `"action"`, the existing record, for a duplicate id).

use crate::auth::Denied;
use crate::queue::{ActionRecord, ScheduleError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// The `code` of an API error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiErrorCode {
    /// 400: the body is not JSON, or not the shape asked for (`field` names where).
    BadRequest,
    /// 400: `kind` names no action kind.
    UnknownKind,
    /// 400: an argument is wrong (`field` names it).
    BadArgs,
    /// 401: no bearer token.
    TokenMissing,
    /// 401: a token that is not this agent's.
    TokenWrong,
    /// 403: the agent was started without a token, so it takes no action.
    WritesDisabled,
    /// 404: no such action, or no such route.
    NotFound,
    /// 409: the id is taken; `action` is the existing record.
    DuplicateId,
    /// 429: the queue is full.
    QueueFull,
    /// 500: the agent's state failed.
    Internal,
}

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ApiErrorCode,
    message: String,
    field: Option<String>,
    action: Option<Box<ActionRecord>>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a ActionRecord>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: ApiErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// An error without a field.
    pub fn new(status: StatusCode, code: ApiErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            action: None,
        }
    }

    /// A 400 naming `field`.
    pub fn field(
        code: ApiErrorCode,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ApiError {
        let field = field.into();
        let message = format!("{field}: {}", message.into());
        ApiError {
            field: Some(field),
            ..ApiError::new(StatusCode::BAD_REQUEST, code, message)
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    /// The error's code.
    pub fn code(&self) -> ApiErrorCode {
        self.code
    }

    /// The field at fault, if one is.
    pub fn field_name(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// A 500 from the agent's own state.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiErrorCode::Internal,
            e.to_string(),
        )
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Missing => ApiError::new(
                StatusCode::UNAUTHORIZED,
                ApiErrorCode::TokenMissing,
                "Authorization: a bearer token is required",
            ),
            Denied::Wrong => ApiError::new(
                StatusCode::UNAUTHORIZED,
                ApiErrorCode::TokenWrong,
                "Authorization: the bearer token is not this agent's",
            ),
            Denied::WritesDisabled => ApiError::new(
                StatusCode::FORBIDDEN,
                ApiErrorCode::WritesDisabled,
                "this agent was started without --token: it takes no action",
            ),
        }
    }
}

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::Duplicate(existing) => ApiError {
                field: Some("id".into()),
                action: Some(existing.clone()),
                ..ApiError::new(
                    StatusCode::CONFLICT,
                    ApiErrorCode::DuplicateId,
                    format!(
                        "id: an action with id {:?} exists (state {})",
                        existing.id,
                        existing.state.as_str()
                    ),
                )
            },
            ScheduleError::Full { limit } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ApiErrorCode::QueueFull,
                format!("the queue is full: {limit} actions are waiting; retry later"),
            ),
            ScheduleError::Store(e) => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
            action: self.action.as_deref(),
        };
        (self.status, Json(body)).into_response()
    }
}
