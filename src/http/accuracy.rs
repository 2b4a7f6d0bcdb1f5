//! `GET /v1/groups/{group}/accuracy`: how each candidate model has done
//! for a group lately, which one `auto` serves and why, and the state of
//! its calibration.

use actix_web::web;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, AppState, ErrorBody, resource};
use crate::accuracy::{DAY, GroupLedger, HISTORY_SPAN, ModelTrack, PastPoint, Tally};
use crate::app::accuracy::catch_up;
use crate::domain::{HORIZON, ScalingGroup, rfc3339};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource(
        "/v1/groups/{group}/accuracy",
        web::get().to(group_accuracy),
    ))
    .service(resource(
        "/v1/groups/{group}/forecast/history",
        web::get().to(forecast_history),
    ));
}

/// Scores over a window; absent values where it holds no points.
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowScores {
    /// Points scored (forecast steps whose actual arrived).
    pub points: u64,
    /// Weighted quantile loss of p10, p50, p90 (lower is better).
    pub wql: Option<f64>,
    /// Mean absolute error of the median, CPU %.
    pub mae: Option<f64>,
    /// Share of actuals inside p10-p90 (0.80 is calibrated).
    pub coverage: Option<f64>,
}

impl From<&Tally> for WindowScores {
    fn from(t: &Tally) -> Self {
        Self {
            points: t.points as u64,
            wql: t.wql(),
            mae: t.mae(),
            coverage: t.coverage(),
        }
    }
}

/// One candidate's record for the group.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelAccuracy {
    pub model: String,
    /// The last 24 hours.
    pub last_day: WindowScores,
    /// The last 7 days.
    pub last_week: WindowScores,
    /// The last 7 days, per horizon step (index 0 is one step ahead).
    pub per_step_week: Vec<WindowScores>,
    /// Actuals the calibration has learned from, per horizon step.
    pub calibration_updates: Vec<u32>,
}

/// The last change of the served model.
#[derive(Debug, Serialize, ToSchema)]
pub struct SwitchBody {
    /// Unix seconds.
    pub at: i64,
    pub from: String,
    pub to: String,
    /// WQL over the last day of the model replaced, and of its successor,
    /// when the switch was made.
    pub from_wql: f64,
    pub to_wql: f64,
}

/// A group's accuracy ledger.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccuracyResponse {
    pub group: String,
    /// The model `auto` serves the group with.
    pub served_model: String,
    /// Why: `no_evidence` (the global default until 6 of the last 24
    /// hours hold scores), `best` (best WQL over the last day, or no
    /// challenger better by 5 %), `switched` (within 6 hours of a switch),
    /// `dwell` (a better challenger waits out those 6 hours).
    pub reason: String,
    /// The served model's WQL over the last day is above naive's.
    pub degraded: bool,
    pub switches: u32,
    pub last_switch: Option<SwitchBody>,
    /// Newest actual scored, Unix seconds; windows end there.
    pub observed_until: Option<i64>,
    pub models: Vec<ModelAccuracy>,
}

fn model_body(m: &ModelTrack, now: i64) -> ModelAccuracy {
    ModelAccuracy {
        model: m.name.clone(),
        last_day: (&m.window(now, DAY).0).into(),
        last_week: (&m.window(now, 7 * DAY).0).into(),
        per_step_week: m.per_step(now, 7 * DAY).iter().map(Into::into).collect(),
        calibration_updates: m.calibrator.updates().to_vec(),
    }
}

fn body(group: &ScalingGroup, l: &GroupLedger) -> AccuracyResponse {
    let now = l.observed_until.unwrap_or_default();
    AccuracyResponse {
        group: group.to_string(),
        served_model: l.served_name().to_owned(),
        reason: l.reason.code().to_owned(),
        degraded: l.degraded(now),
        switches: l.switches,
        last_switch: l.last_switch.as_ref().map(|s| SwitchBody {
            at: s.at,
            from: s.from.clone(),
            to: s.to.clone(),
            from_wql: s.from_wql,
            to_wql: s.to_wql,
        }),
        observed_until: l.observed_until,
        models: l.models.iter().map(|m| model_body(m, now)).collect(),
    }
}

/// How each candidate model has forecast a stored group lately.
///
/// The ledger is first brought up to date with the group's samples (at
/// most a day of steps is replayed: a group seen for the first time
/// starts a day back). Windows end at the newest actual.
#[utoipa::path(
    get,
    path = "/v1/groups/{group}/accuracy",
    tag = "forecast",
    params(("group" = String, Path, description = "Auto Scaling group name")),
    responses(
        (status = 200, body = AccuracyResponse),
        (status = 400, description = "Bad group name", body = ErrorBody),
        (status = 404, description = "No samples for the group", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody),
    )
)]
pub async fn group_accuracy(
    state: web::Data<AppState>,
    group: web::Path<String>,
) -> Result<web::Json<AccuracyResponse>, ApiError> {
    let group = ScalingGroup::parse(&group)?;
    let ledger = catch_up(&state, &group).await?;
    Ok(web::Json(body(&group, &ledger)))
}

/// Query of the forecast history.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// First actual, RFC 3339 or Unix seconds (default: a day before
    /// `end`).
    pub start: Option<String>,
    /// Last actual, RFC 3339 or Unix seconds (default: the newest actual
    /// scored). `end - start` at most 2 days, the history kept.
    pub end: Option<String>,
    /// Steps ahead the forecasts were made: 1 (default) or 12 (the
    /// horizon).
    pub lead: Option<u8>,
}

/// A served forecast and its actual.
#[derive(Debug, Serialize, ToSchema)]
pub struct PastForecastPoint {
    /// Time of the actual, RFC 3339.
    pub timestamp: String,
    /// The model `auto` served the forecast with.
    pub model: String,
    /// Calibrated quantiles, CPU %.
    pub p10: f32,
    pub p50: f32,
    pub p90: f32,
    pub actual: f32,
}

/// Past forecasts against actuals, and their scores.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryResponse {
    pub group: String,
    pub lead: u8,
    /// The range asked for, RFC 3339.
    pub start: String,
    pub end: String,
    /// Scores of the points below.
    pub scores: WindowScores,
    pub points: Vec<PastForecastPoint>,
}

/// A time from a query: RFC 3339 or Unix seconds.
fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    let v = match text.trim().parse::<i64>() {
        Ok(n) => serde_json::Value::from(n),
        Err(_) => serde_json::Value::from(text.trim()),
    };
    crate::ingest::parse_timestamp(&v).map_err(|m| ApiError::BadParameter {
        field: field.into(),
        message: m,
    })
}

/// What `auto` served a stored group, against what happened: the
/// forecasts made one step (or the whole horizon) ahead of each time in
/// the range, calibrated as served, beside the actual (as AWS's
/// GetPredictiveScalingForecast returns past forecasts). The last two
/// days are kept. The ledger is first brought up to date, as for
/// `/accuracy`.
#[utoipa::path(
    get,
    path = "/v1/groups/{group}/forecast/history",
    tag = "forecast",
    params(("group" = String, Path, description = "Auto Scaling group name"), HistoryQuery),
    responses(
        (status = 200, body = HistoryResponse),
        (status = 400, description = "Bad group name, start, end (or a range inverted or over 2 days) or lead", body = ErrorBody),
        (status = 404, description = "No samples for the group", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody),
    )
)]
pub async fn forecast_history(
    state: web::Data<AppState>,
    group: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<web::Json<HistoryResponse>, ApiError> {
    let group = ScalingGroup::parse(&group)?;
    let bad = |field: &str, message: String| ApiError::BadParameter {
        field: field.into(),
        message,
    };
    let lead = query.lead.unwrap_or(1);
    if lead != 1 && usize::from(lead) != HORIZON {
        return Err(bad("lead", format!("must be 1 or {HORIZON}, got {lead}")));
    }
    let start = query
        .start
        .as_deref()
        .map(|t| parse_time("start", t))
        .transpose()?;
    let end = query
        .end
        .as_deref()
        .map(|t| parse_time("end", t))
        .transpose()?;
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return Err(bad(
                "start",
                format!("{} is after end {}", rfc3339(s), rfc3339(e)),
            ));
        }
        if e - s > HISTORY_SPAN {
            return Err(bad(
                "end",
                format!(
                    "the range is {} s; at most {HISTORY_SPAN} s (2 days) of forecasts are kept",
                    e - s
                ),
            ));
        }
    }
    let ledger = catch_up(&state, &group).await?;
    let end = end.unwrap_or_else(|| ledger.observed_until.unwrap_or_default());
    let start = start.unwrap_or(end - DAY);
    let mut tally = Tally::default();
    let mut points: Vec<&PastPoint> = ledger
        .history
        .items()
        .flatten()
        .filter(|p| p.lead == lead && (start..=end).contains(&p.ts))
        .collect();
    points.sort_by_key(|p| p.ts);
    for p in &points {
        tally.add(&Tally::point(p.v[3], [p.v[0], p.v[1], p.v[2]]));
    }
    let name = |i: u8| {
        ledger
            .models
            .get(usize::from(i))
            .map_or_else(String::new, |m| m.name.clone())
    };
    Ok(web::Json(HistoryResponse {
        group: group.to_string(),
        lead,
        start: rfc3339(start),
        end: rfc3339(end),
        scores: (&tally).into(),
        points: points
            .into_iter()
            .map(|p| PastForecastPoint {
                timestamp: rfc3339(p.ts),
                model: name(p.model),
                p10: p.v[0],
                p50: p.v[1],
                p90: p.v[2],
                actual: p.v[3],
            })
            .collect(),
    }))
}
