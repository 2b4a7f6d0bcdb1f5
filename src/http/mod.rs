//! The HTTP layer: thin handlers over the use cases (`crate::app`); they
//! parse, call, and shape the answer (wire types in `types`).
//!
//! [`create_app`] builds the whole `App`, so tests run it in-process;
//! [`serve`] runs it on a listener until shutdown. Bodies are read by hand
//! ([`read_json`]) so that size, content-type and JSON errors get the same
//! JSON error body as everything else.

mod accuracy;
mod actions;
pub mod auth;
mod error;
mod forecast;
mod groups;
mod openapi;
mod ops;
mod recommend;
mod types;

use std::net::TcpListener;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpMessage, HttpRequest, HttpServer, web};
use futures_util::StreamExt;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use error::{ApiError, ErrorBody};
pub use openapi::ApiDoc;

use crate::app::AppState;

/// The OpenAPI document as served and committed (`openapi/openapi.json`).
pub fn openapi_json() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// The application, ready for `HttpServer` or `actix_web::test`.
pub fn create_app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let observed = state.clone();
    App::new()
        .app_data(state)
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            ApiError::BadParameter {
                field: "query".into(),
                message: e.to_string(),
            }
            .into()
        }))
        .app_data(web::PathConfig::default().error_handler(|e, _| {
            ApiError::BadParameter {
                field: "path".into(),
                message: e.to_string(),
            }
            .into()
        }))
        .configure(groups::configure)
        .configure(accuracy::configure)
        .configure(forecast::configure)
        .configure(recommend::configure)
        .configure(actions::configure)
        .configure(ops::configure)
        .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", ApiDoc::openapi()))
        .default_service(web::to(not_found))
        .wrap_fn(move |req, srv| {
            use actix_web::dev::Service;
            let started = Instant::now();
            let method = req.method().to_string();
            let state = observed.clone();
            let refused = match &state.tokens {
                Some(tokens) if auth::needs_token(req.method()) => {
                    let header = req
                        .headers()
                        .get(actix_web::http::header::AUTHORIZATION)
                        .map(|v| v.as_bytes());
                    (!tokens.accepts(header)).then_some(if header.is_none() {
                        "this endpoint needs Authorization: Bearer <token>"
                    } else {
                        "the bearer token is not valid"
                    })
                }
                _ => None,
            };
            let call = match refused {
                None => Ok(srv.call(req)),
                Some(msg) => Err(req.into_response(actix_web::ResponseError::error_response(
                    &ApiError::Unauthorized(msg),
                ))),
            };
            async move {
                let fut = match call {
                    Ok(fut) => fut,
                    Err(refused) => {
                        state
                            .metrics
                            .observe_request("unauthorized", &method, 401, 0.0);
                        return Ok(refused.map_into_right_body());
                    }
                };
                let res = fut.await?;
                // Label by route pattern, never by raw path (bounded cardinality).
                let route = res
                    .request()
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".into());
                state.metrics.observe_request(
                    &route,
                    &method,
                    res.status().as_u16(),
                    started.elapsed().as_secs_f64(),
                );
                Ok(res.map_into_left_body())
            }
        })
}

/// Run the app on `listener` until the process is told to stop.
pub fn serve(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<Server> {
    Ok(HttpServer::new(move || create_app(state.clone()))
        .listen(listener)?
        .shutdown_timeout(10)
        .run())
}

async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}

/// A resource with one route; any other method gets a JSON 405.
fn resource(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}

/// Read a JSON body: content type checked, size bounded, parsed to a value.
pub async fn read_json(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<serde_json::Value, ApiError> {
    let mime = req.mime_type().ok().flatten();
    let json = mime.as_ref().is_some_and(|m| {
        m.type_() == "application"
            && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"))
    });
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    if let Some(len) = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limit
    {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadBody(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    if body.is_empty() {
        return Err(ApiError::InvalidJson("the body is empty".into()));
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
