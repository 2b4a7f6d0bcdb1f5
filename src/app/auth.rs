//! API tokens: who may write. The HTTP layer reads the header and asks
//! [`ApiTokens::accepts`]; tokens are compared in constant time and never
//! logged.

/// The accepted tokens.
pub struct ApiTokens(Vec<Vec<u8>>);

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiTokens({} tokens, redacted)", self.0.len())
    }
}

/// Shortest token accepted: a guessable token is worse than none.
pub const MIN_TOKEN_LEN: usize = 16;

impl ApiTokens {
    /// Tokens from a list (blank entries ignored); errors on a short one.
    pub fn new<I: IntoIterator<Item = String>>(tokens: I) -> Result<Option<Self>, String> {
        let mut out = Vec::new();
        for t in tokens {
            let t = t.trim();
            if t.is_empty() {
                continue;
            }
            if t.len() < MIN_TOKEN_LEN {
                return Err(format!(
                    "an API token is {} characters long; the minimum is {MIN_TOKEN_LEN}",
                    t.len()
                ));
            }
            out.push(t.as_bytes().to_vec());
        }
        Ok((!out.is_empty()).then_some(Self(out)))
    }

    /// True when `header` (the whole Authorization value) carries a token.
    pub fn accepts(&self, header: Option<&[u8]>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        // Check every token, whatever matched, so timing says nothing.
        self.0
            .iter()
            .fold(false, |ok, t| constant_time_eq(t, given) | ok)
    }
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_whole() {
        let t = ApiTokens::new(["0123456789abcdef".to_owned(), "fedcba9876543210xx".into()])
            .expect("valid")
            .expect("some");
        assert!(t.accepts(Some(b"Bearer 0123456789abcdef")));
        assert!(t.accepts(Some(b"Bearer fedcba9876543210xx")));
        assert!(!t.accepts(Some(b"Bearer 0123456789abcde")));
        assert!(!t.accepts(Some(b"Bearer 0123456789abcdefg")));
        assert!(!t.accepts(Some(b"bearer 0123456789abcdef")));
        assert!(!t.accepts(Some(b"0123456789abcdef")));
        assert!(!t.accepts(None));
        assert!(ApiTokens::new(["short".to_owned()]).is_err());
        assert!(ApiTokens::new([" ".to_owned()]).expect("blank").is_none());
    }
}
