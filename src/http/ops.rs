//! Operations endpoints: liveness, readiness, Prometheus metrics.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AppState, resource};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz", web::get().to(healthz)))
        .service(resource("/readyz", web::get().to(readyz)))
        .service(resource("/metrics", web::get().to(metrics)));
}

/// Health or readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `unavailable`.
    pub status: &'static str,
    /// Store backend: `memory` or `redis`.
    pub store: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz(state: web::Data<AppState>) -> web::Json<Health> {
    web::Json(Health {
        status: "ok",
        store: state.store.backend_name(),
        detail: None,
    })
}

/// Readiness: the store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses((status = 200, body = Health), (status = 503, description = "Store unreachable", body = Health))
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.backend_name();
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(Health {
            status: "ready",
            store,
            detail: None,
        }),
        Err(e) => HttpResponse::ServiceUnavailable().json(Health {
            status: "unavailable",
            store,
            detail: Some(e.to_string()),
        }),
    }
}

/// Prometheus text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let groups = match state.store.groups().await {
        Ok(g) => g.len() as f64,
        Err(_) => f64::NAN,
    };
    let text = state.metrics.render(&[(
        "forescale_groups",
        "Groups with samples in the store.",
        groups,
    )]);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}
