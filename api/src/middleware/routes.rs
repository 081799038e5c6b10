//! The table of routes, read from the OpenAPI document: `Allow` on a 405 and the route
//! label of metrics and logs never drift from the routes.

/// Path templates of the API and their methods, read from the OpenAPI document, so `Allow`
/// and route labels never drift from the routes.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<(Vec<String>, String, String)>,
}

/// Routes outside the OpenAPI document that are labelled by their own path.
const FIXED_ROUTES: [&str; 7] = [
    "/",
    "/health",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/api/v1/openapi.json",
    "/docs",
];

impl RouteTable {
    /// Builds the table from an OpenAPI document whose paths live under `prefix`.
    pub fn from_spec(spec_json: &str, prefix: &str) -> Self {
        let spec = serde_json::from_str::<serde_json::Value>(spec_json).unwrap_or_default();
        let routes = spec
            .get("paths")
            .and_then(|p| p.as_object())
            .into_iter()
            .flatten()
            .map(|(path, ops)| {
                let mut methods: Vec<String> = ops
                    .as_object()
                    .map(|o| o.keys().map(|m| m.to_ascii_uppercase()).collect())
                    .unwrap_or_default();
                methods.sort();
                let full = format!("{prefix}{path}");
                (split(&full), methods.join(", "), full)
            })
            .collect();
        Self { routes }
    }

    fn find(&self, path: &str) -> Option<&(Vec<String>, String, String)> {
        // Called for every request: compare segment by segment without allocating.
        self.routes.iter().find(|(tpl, _, _)| {
            let mut segs = path.split('/').filter(|s| !s.is_empty());
            tpl.iter()
                .all(|t| segs.next().is_some_and(|s| t.starts_with('{') || t == s))
                && segs.next().is_none()
        })
    }

    /// The `Allow` value for a concrete path, if it matches a template.
    pub fn allowed(&self, path: &str) -> Option<String> {
        self.find(path).map(|(_, m, _)| m.clone())
    }

    /// The metrics/log label of a path: its template, a fixed route, or `unmatched`.
    pub fn route_label<'a>(&'a self, path: &'a str) -> &'a str {
        if let Some((_, _, tpl)) = self.find(path) {
            return tpl;
        }
        // The console's pages share one label (ids in its paths must not become labels).
        if path == "/console" || path.starts_with("/console/") {
            return "/console";
        }
        FIXED_ROUTES
            .iter()
            .find(|r| **r == path)
            .copied()
            .unwrap_or("unmatched")
    }
}

fn split(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_table_matches_templates() {
        let spec = r#"{"paths":{"/verification/status/{verificationId}":{"get":{}},
                       "/verification/initiate":{"post":{}}}}"#;
        let t = RouteTable::from_spec(spec, "/api/v1");
        assert_eq!(
            t.allowed("/api/v1/verification/status/ver_x").as_deref(),
            Some("GET")
        );
        assert_eq!(
            t.allowed("/api/v1/verification/initiate").as_deref(),
            Some("POST")
        );
        assert_eq!(t.allowed("/api/v1/verification/nope"), None);
        assert_eq!(
            t.route_label("/api/v1/verification/status/ver_x"),
            "/api/v1/verification/status/{verificationId}"
        );
        assert_eq!(t.route_label("/health/live"), "/health/live");
        assert_eq!(t.route_label("/wp-admin"), "unmatched");
        assert_eq!(
            t.route_label("/api/v1/verification/status/ver_x/extra"),
            "unmatched"
        );
        assert_eq!(t.route_label("/api/v1/verification"), "unmatched");
    }
}
