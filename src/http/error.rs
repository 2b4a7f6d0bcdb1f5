//! The one HTTP error type. Every variant maps to a status in one `match`
//! with no catch-all, and every error leaves as the same JSON body
//! ([`ErrorBody`]), including the ones actix itself raises (bad query
//! strings, unknown routes, wrong methods).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppError;
use crate::domain::GroupNameError;
use crate::forecast::ForecastError;
use crate::ingest::ValidationError;
use crate::store::StoreError;

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `validation_failed`.
    pub error: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// The offending field as a JSON path (`samples[3].features.cpu_usage_pct`)
    /// or a query/path parameter name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_index: Option<usize>,
    /// RFC 3339 timestamp of the offending sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the request body could not be read: {0}")]
    BadBody(String),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("the body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("invalid group name: {0}")]
    InvalidGroup(#[from] GroupNameError),
    #[error("invalid query parameter {field}: {message}")]
    BadParameter { field: String, message: String },
    #[error("no samples for group {0}")]
    GroupNotFound(String),
    #[error(transparent)]
    Forecast(#[from] ForecastError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no route for {method} {path}")]
    NotFound { method: String, path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::BadBody(_) => "bad_body",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Validation(_) => "validation_failed",
            Self::InvalidGroup(_) => "invalid_group",
            Self::BadParameter { .. } => "bad_parameter",
            Self::GroupNotFound(_) => "group_not_found",
            Self::Forecast(ForecastError::NotEnoughHistory { .. }) => "not_enough_history",
            Self::Forecast(ForecastError::BadHorizon { .. }) => "bad_parameter",
            Self::Forecast(ForecastError::Model(_)) => "model_failed",
            Self::Store(StoreError::TooOld { .. }) => "validation_failed",
            Self::Store(StoreError::Io(_) | StoreError::Redis(_) | StoreError::Corrupt(_)) => {
                "store_unavailable"
            }
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Unauthorized(_) => "unauthorized",
            Self::Internal(_) => "internal",
        }
    }

    fn body(&self) -> ErrorBody {
        let mut b = ErrorBody {
            error: self.code(),
            message: self.to_string(),
            field: None,
            sample_index: None,
            timestamp: None,
            feature: None,
        };
        match self {
            Self::Validation(v) => {
                b.field = Some(v.field.clone());
                b.sample_index = v.sample_index;
                b.timestamp.clone_from(&v.timestamp);
                b.feature.clone_from(&v.feature);
            }
            Self::Store(StoreError::TooOld {
                index, timestamp, ..
            }) => {
                b.field = Some(format!("samples[{index}].timestamp"));
                b.sample_index = Some(*index);
                b.timestamp = Some(crate::domain::rfc3339(*timestamp));
            }
            Self::InvalidGroup(_) | Self::GroupNotFound(_) => b.field = Some("group".into()),
            Self::BadParameter { field, .. } => b.field = Some(field.clone()),
            Self::Forecast(ForecastError::BadHorizon { .. }) => b.field = Some("horizon".into()),
            Self::Forecast(ForecastError::NotEnoughHistory { .. }) => {
                b.field = Some("samples".into());
            }
            Self::InvalidJson(_) | Self::BadBody(_) | Self::PayloadTooLarge { .. } => {
                b.field = Some("body".into());
            }
            Self::UnsupportedMediaType => b.field = Some("Content-Type".into()),
            Self::Unauthorized(_) => b.field = Some("Authorization".into()),
            Self::Store(StoreError::Io(_) | StoreError::Redis(_) | StoreError::Corrupt(_))
            | Self::NotFound { .. }
            | Self::MethodNotAllowed { .. }
            | Self::Forecast(ForecastError::Model(_))
            | Self::Internal(_) => {}
        }
        b
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_) | Self::BadBody(_) | Self::InvalidGroup(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::BadParameter { .. } | Self::Forecast(ForecastError::BadHorizon { .. }) => {
                StatusCode::BAD_REQUEST
            }
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) | Self::Store(StoreError::TooOld { .. }) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Forecast(ForecastError::NotEnoughHistory { .. }) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::GroupNotFound(_) | Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            // Not the client's fault: the backend is down or the disk failed.
            Self::Store(StoreError::Io(_) | StoreError::Redis(_) | StoreError::Corrupt(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // A model that fails on valid input is our bug, not the client's.
            Self::Forecast(ForecastError::Model(_)) | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut r = HttpResponse::build(status);
        if matches!(self, Self::Unauthorized(_)) {
            r.insert_header(("WWW-Authenticate", "Bearer"));
        }
        r.json(self.body())
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::InvalidGroup(e) => Self::InvalidGroup(e),
            AppError::BadParameter { field, message } => Self::BadParameter { field, message },
            AppError::GroupNotFound(g) => Self::GroupNotFound(g),
            AppError::Forecast(e) => Self::Forecast(e),
            AppError::Store(e) => Self::Store(e),
            AppError::Internal(m) => Self::Internal(m),
        }
    }
}
