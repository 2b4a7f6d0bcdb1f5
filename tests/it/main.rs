//! The one integration test binary (link time matters): modules by area.
//! Redis tests talk to a real server at `FORESCALE_TEST_REDIS_URL`
//! (default redis://127.0.0.1:6379/); AWS tests talk to moto in server mode
//! at `FORESCALE_TEST_MOTO_URL` (default http://127.0.0.1:5000). `scripts/test.sh`
//! starts both.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod accuracy;
mod actuator;
mod cli;
mod control;
mod faults;
mod http_api;
mod neural;
mod openapi;
mod retrain;
mod sim;
mod store_suite;
mod support;
