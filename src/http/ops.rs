//! Operations endpoints: liveness, readiness, Prometheus metrics.

use actix_web::{HttpResponse, web};

use super::types::Health;
use super::{AppState, resource};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz", web::get().to(healthz)))
        .service(resource("/readyz", web::get().to(readyz)))
        .service(resource("/metrics", web::get().to(metrics)));
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

/// Readiness: `ready` when the store (and the Redis cache tier, if any)
/// answers; `degraded` (still 200: forecasts and recommendations go on
/// from the in-process caches, pushes to a Redis store are refused with
/// 503) when Redis is unreachable; the detail says what failed.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses((status = 200, description = "ready or degraded", body = Health))
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.backend_name();
    let mut problems = Vec::new();
    if let Err(e) = state.store.ping().await {
        problems.push(format!(
            "store unreachable ({e}): answering from the last windows read, pushes refused"
        ));
    }
    if let Some(Err(e)) = state.cache.redis_ping().await {
        problems.push(format!(
            "embedding cache redis unreachable ({e}): in-process tier only"
        ));
    }
    if problems.is_empty() {
        HttpResponse::Ok().json(Health {
            status: "ready",
            store,
            detail: None,
        })
    } else {
        HttpResponse::Ok().json(Health {
            status: "degraded",
            store,
            detail: Some(problems.join("; ")),
        })
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
    let text = state.metrics.render(&[
        (
            "forescale_groups",
            "Groups with samples in the store.",
            groups,
        ),
        (
            "forescale_store_fallback_reads",
            "Window reads answered from the in-process copy while Redis was unreachable (since start).",
            state.store.fallback_reads() as f64,
        ),
        (
            "forescale_policy_version",
            "Version of the trained scaling policy served (0: none, predictive scaling).",
            state.policy.get().map_or(0.0, |p| f64::from(p.config.version)),
        ),
    ]);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}
