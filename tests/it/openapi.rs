//! The committed OpenAPI document must equal the generated one.
//! Regenerate: `cargo run -- openapi > openapi/openapi.json`.

#[test]
fn committed_openapi_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let generated = forescale::http::openapi_json();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json` \
         (or UPDATE_OPENAPI=1 cargo test --test it openapi)"
    );
}
