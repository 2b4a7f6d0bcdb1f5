//! `forescale serve`: the HTTP service, with the control loop and the
//! background retrain beside it when configured; SIGTERM or SIGINT stops
//! the server, then the loops (each finishes its tick).

use std::sync::Arc;

use anyhow::Context;

use crate::app::{ServiceConfig, Shutdown};

pub(super) async fn run(args: ServiceConfig) -> anyhow::Result<()> {
    let state = Arc::new(args.state().await?);
    let listener = std::net::TcpListener::bind(&args.listen)
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        store = state.store.backend_name(),
        default_model = %state.default_model,
        "forescale serving; docs at /docs/"
    );
    let shutdown = Shutdown::default();
    let mut loops = Vec::new();
    if let Some(control) = args.control_loop(state.clone()).await? {
        tracing::info!(
            groups = control.settings.groups.len(),
            writes = control.actuator.policy.enabled.len(),
            kill_switch = control
                .actuator
                .policy
                .kill_switch
                .load(std::sync::atomic::Ordering::SeqCst),
            "control loop on (forecast-only unless a group is in --write-groups)"
        );
        loops.push(control.spawn(shutdown.clone()));
    }
    if args.retrain_every_hours > 0.0 {
        anyhow::ensure!(
            args.retrain_every_hours.is_finite() && args.retrain_recent_days >= 0.0,
            "--retrain-every-hours must be a finite number of hours and --retrain-recent-days >= 0"
        );
        anyhow::ensure!(
            state.policy.get().is_some(),
            "--retrain-every-hours: no trained policy in {}/policy to retrain",
            args.registry.models_dir.display()
        );
        let settings = crate::app::improve::ImproveSettings {
            every: std::time::Duration::from_secs_f64(args.retrain_every_hours * 3600.0),
            policy_dir: crate::train::retrain::PolicyDir::new(
                args.registry.models_dir.join("policy"),
            ),
            options: crate::train::retrain::RetrainOptions::default(),
            recent_days: args.retrain_recent_days,
        };
        tracing::info!(
            every_hours = args.retrain_every_hours,
            "background policy retrain on"
        );
        loops.push(crate::app::improve::spawn(
            state.clone(),
            settings,
            shutdown.clone(),
        ));
    }
    if args.track_accuracy {
        tracing::info!(
            candidates = ?state.ledgers.candidates(),
            "accuracy ledgers advance in the background as samples arrive"
        );
        loops.push(crate::app::accuracy::spawn_worker(
            state.clone(),
            shutdown.clone(),
        ));
    }
    // actix stops the server on SIGTERM or SIGINT (finishing requests in
    // flight); then the loops are told to stop and finish their tick.
    let server = crate::http::serve(listener, actix_web::web::Data::from(state))?;
    let served = server.await;
    shutdown.signal();
    for l in loops {
        if let Err(e) = l.await {
            tracing::warn!(error = %e, "a background loop ended abnormally");
        }
    }
    tracing::info!("forescale stopped");
    Ok(served?)
}
