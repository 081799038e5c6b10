//! The `health-check` subcommands' probe: a container `HEALTHCHECK` needs no curl in the image.

use std::time::Duration;

/// GETs `url` and succeeds on a 2xx within `timeout`. Certificates are not verified: the probe
/// talks to its own process on loopback, where the name never matches the certificate.
pub async fn probe(url: &str, timeout: Duration) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {}", resp.status()))
    }
}
