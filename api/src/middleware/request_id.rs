//! Request ids: a sane incoming `X-Request-Id` is kept, else a new UUID v4.

use poem::Request;

/// The request's id: its sane `X-Request-Id`, or a new one.
pub(super) fn for_request(req: &Request) -> String {
    sane(req).unwrap_or_else(fresh)
}

/// A new request id: a UUID v4. Request ids must be unique, not secret, so the bytes come from
/// the thread-local CSPRNG (seeded by the OS) rather than a `getrandom` syscall per request.
fn fresh() -> String {
    let bytes: [u8; 16] = rand::RngExt::random(&mut rand::rng());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// A sane incoming request id: 1–128 characters of `[A-Za-z0-9._:-]`.
fn sane(req: &Request) -> Option<String> {
    let v = req.headers().get("x-request-id")?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| v.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_request_ids_are_distinct_uuid_v4() {
        let a = super::fresh();
        let b = super::fresh();
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
    }
}
