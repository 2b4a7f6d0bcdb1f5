//! Bearer-token authentication of write endpoints.
//!
//! When tokens are configured (`--api-tokens`, `--api-tokens-file`), every
//! request that is not a read (GET, HEAD, OPTIONS) needs
//! `Authorization: Bearer <token>` with one of them; tokens are compared in
//! constant time and never logged. With no tokens configured the service
//! is open (the embedded default, on 127.0.0.1) and says so at start.

use actix_web::http::Method;

/// Reads need no token.
pub fn needs_token(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_no_token() {
        assert!(needs_token(&Method::POST) && !needs_token(&Method::GET));
        assert!(needs_token(&Method::DELETE) && !needs_token(&Method::HEAD));
    }
}
