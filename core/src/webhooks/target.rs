//! Where a webhook may go: the URL rules checked when a company registers its URL
//! ([`validate_webhook_url`], [`check_registration`]), and the SSRF guard of every delivery:
//! only http(s), and no loopback, private, link-local, multicast, unspecified or otherwise
//! non-public address, checked after DNS at connect time (so a hostname that resolves to such
//! an address is refused too), unless `WEBHOOK_ALLOW_PRIVATE_NETWORKS=true`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether an address must never be a webhook target.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let seg0 = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (seg0 & 0xfe00) == 0xfc00 // unique local
        || (seg0 & 0xffc0) == 0xfe80 // link-local
        || (seg0 & 0xffc0) == 0xfec0 // site-local (deprecated)
        || seg0 == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || seg0 == 0x0064 && ip.segments()[1] == 0xff9b // NAT64 (maps to v4 we cannot check)
        || ip.to_ipv4().is_some_and(forbidden_v4) // IPv4-compatible
}

/// The longest webhook URL a company may register (bytes).
pub const MAX_URL_BYTES: usize = 2048;

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetRefused {
    /// Longer than [`MAX_URL_BYTES`].
    #[error("webhook URL is longer than 2048 bytes")]
    TooLong,
    /// Not http or https.
    #[error("webhook URL scheme `{0}` is not http or https")]
    Scheme(String),
    /// No host.
    #[error("webhook URL has no host")]
    NoHost,
    /// User name or password in the URL.
    #[error("webhook URL must not carry credentials")]
    Credentials,
    /// Not a URL at all.
    #[error("webhook URL is not a URL: {0}")]
    Invalid(String),
    /// A forbidden address (given literally or resolved).
    #[error(
        "webhook target {0} is a loopback, private, link-local or otherwise non-public address"
    )]
    Forbidden(IpAddr),
}

/// Checks a webhook URL as a company gives it: absolute http(s) with a host, no credentials,
/// at most [`MAX_URL_BYTES`]; returns it normalised. Where it points is checked by
/// [`check_registration`] and again at every delivery (after DNS), not here.
pub fn validate_webhook_url(raw: &str) -> Result<String, TargetRefused> {
    if raw.len() > MAX_URL_BYTES {
        return Err(TargetRefused::TooLong);
    }
    let url = url::Url::parse(raw).map_err(|e| TargetRefused::Invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetRefused::Scheme(url.scheme().to_owned()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TargetRefused::NoHost);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetRefused::Credentials);
    }
    Ok(url.to_string())
}

/// Checks what can be checked before DNS: the scheme, and an IP-literal host (which never
/// reaches the resolver).
pub fn check_url(url: &reqwest::Url, allow_private: bool) -> Result<(), TargetRefused> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetRefused::Scheme(url.scheme().to_owned()));
    }
    match url.host() {
        None => Err(TargetRefused::NoHost),
        Some(url::Host::Ipv4(ip)) if !allow_private && is_forbidden(IpAddr::V4(ip)) => {
            Err(TargetRefused::Forbidden(IpAddr::V4(ip)))
        }
        Some(url::Host::Ipv6(ip)) if !allow_private && is_forbidden(IpAddr::V6(ip)) => {
            Err(TargetRefused::Forbidden(IpAddr::V6(ip)))
        }
        Some(_) => Ok(()),
    }
}

/// The check of a webhook URL when a company registers it (self-service): what
/// [`check_url`] checks, and, for a host name, every address it resolves to now (any forbidden
/// one refuses it, a stricter rule than delivery's, which only drops those). A name that does
/// not resolve, or not within `dns_timeout`, passes: DNS can change, and every delivery checks
/// again after its own resolution.
pub async fn check_registration(
    url: &str,
    allow_private: bool,
    dns_timeout: std::time::Duration,
) -> Result<(), TargetRefused> {
    let url = reqwest::Url::parse(url).map_err(|e| TargetRefused::Invalid(e.to_string()))?;
    let url = &url;
    check_url(url, allow_private)?;
    if allow_private {
        return Ok(());
    }
    let Some(url::Host::Domain(host)) = url.host() else {
        return Ok(());
    };
    let lookup = tokio::net::lookup_host((host, url.port_or_known_default().unwrap_or(443)));
    if let Ok(Ok(addrs)) = tokio::time::timeout(dns_timeout, lookup).await {
        for addr in addrs {
            if is_forbidden(addr.ip()) {
                return Err(TargetRefused::Forbidden(addr.ip()));
            }
        }
    }
    Ok(())
}

/// A resolver that drops forbidden addresses and fails when none is left, so the HTTP client
/// can only ever connect to public addresses.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// `WEBHOOK_ALLOW_PRIVATE_NETWORKS`.
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| allow_private || !is_forbidden(a.ip()))
                .collect();
            match (allowed.is_empty(), addrs.first()) {
                (false, _) => Ok(Box::new(allowed.into_iter()) as Addrs),
                (true, Some(first)) => Err(Box::new(TargetRefused::Forbidden(first.ip())) as _),
                (true, None) => Err(format!("{host} did not resolve").into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        for bad in [
            "127.0.0.1",
            "127.9.9.9",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "64:ff9b::1.2.3.4",
        ] {
            assert!(is_forbidden(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert!(!is_forbidden(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn webhook_urls_are_http_and_clean() {
        assert_eq!(
            validate_webhook_url("https://example.com/hook").unwrap(),
            "https://example.com/hook"
        );
        assert_eq!(
            validate_webhook_url("ftp://example.com"),
            Err(TargetRefused::Scheme("ftp".into()))
        );
        assert_eq!(
            validate_webhook_url("https://user:pw@example.com"),
            Err(TargetRefused::Credentials)
        );
        assert!(matches!(
            validate_webhook_url("not a url"),
            Err(TargetRefused::Invalid(_))
        ));
        assert_eq!(
            validate_webhook_url(&format!("https://e.com/{}", "a".repeat(2048))),
            Err(TargetRefused::TooLong)
        );
        assert_eq!(
            validate_webhook_url("http:///nohost"),
            Ok("http://nohost/".to_owned()),
            "the URL standard takes the path's first segment as the host"
        );
        assert_eq!(
            validate_webhook_url("file:///etc/passwd"),
            Err(TargetRefused::Scheme("file".into()))
        );
    }

    #[test]
    fn checks_schemes_and_literal_hosts() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert_eq!(
            check_url(&url("ftp://example.com/x"), false),
            Err(TargetRefused::Scheme("ftp".into()))
        );
        assert!(matches!(
            check_url(&url("http://[::1]:8080/"), false),
            Err(TargetRefused::Forbidden(_))
        ));
        assert!(matches!(
            check_url(&url("http://169.254.169.254/latest/meta-data"), false),
            Err(TargetRefused::Forbidden(_))
        ));
        assert!(check_url(&url("http://127.0.0.1/"), true).is_ok());
        assert!(check_url(&url("https://example.com/hook"), false).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_that_resolve_to_loopback() {
        let guarded = GuardedResolver {
            allow_private: false,
        };
        let name: Name = "localhost".parse().unwrap();
        let err = guarded.resolve(name).await.err().unwrap();
        assert!(err.to_string().contains("non-public"), "{err}");
        let open = GuardedResolver {
            allow_private: true,
        };
        let name: Name = "localhost".parse().unwrap();
        assert!(open.resolve(name).await.is_ok());
    }
}
