//! Request ids: a client's `X-Request-Id` is kept when it is a short
//! token of safe characters (so it cannot inject into logs or headers);
//! otherwise a new random one is made.

use http::Request;

pub const HEADER: &str = "x-request-id";
const MAX_LEN: usize = 128;

pub fn of<B>(request: &Request<B>) -> String {
    request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}

fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(id: &str) -> String {
        of(&Request::builder()
            .header(HEADER, id)
            .body(())
            .unwrap_or_default())
    }

    #[test]
    fn keeps_safe_ids_and_replaces_others() {
        assert_eq!(with("abc-123"), "abc-123");
        assert_ne!(with("evil\"id"), "evil\"id");
        assert_eq!(with(&"x".repeat(500)).len(), 32);
    }
}
