//! The use cases' error. The HTTP layer maps every variant to a status
//! (`http::ApiError`); the command line prints it.

use crate::domain::GroupNameError;
use crate::forecast::ForecastError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid group name: {0}")]
    InvalidGroup(#[from] GroupNameError),
    /// A request parameter out of range; `field` names it.
    #[error("invalid query parameter {field}: {message}")]
    BadParameter { field: String, message: String },
    #[error("no samples for group {0}")]
    GroupNotFound(String),
    #[error(transparent)]
    Forecast(#[from] ForecastError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// A bad request parameter named `field`.
    pub fn bad(field: &str, message: impl Into<String>) -> Self {
        Self::BadParameter {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A model that failed on valid input (our bug, not the caller's).
    pub fn model(message: impl Into<String>) -> Self {
        Self::Forecast(ForecastError::Model(message.into()))
    }
}
