//! A real browser for the console's tests: Debian's Chromium, headless, driven over WebDriver
//! by its chromedriver (started per test on a free port), with axe-core for the accessibility
//! check. `scripts/test` installs both (`chromium`, `chromium-driver`) and axe-core, and sets
//! `TN_REQUIRE_BROWSER=1`, so in CI a missing browser fails the test; a developer's plain
//! `cargo nextest run` without them skips these tests with a line on stderr.

use std::{path::PathBuf, process::Stdio, time::Duration};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// A headless Chromium and its chromedriver; both end when this is dropped.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    _driver: tokio::process::Child,
    profile: PathBuf,
    axe: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn find_binary(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(name))
        .find(|p| p.is_file())
}

/// Where axe-core's `axe.min.js` is (`TN_AXE_JS`, set by `scripts/test`).
fn axe_path() -> Option<PathBuf> {
    std::env::var_os("TN_AXE_JS")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
}

impl Browser {
    /// Starts a browser, or `None` (after saying why) when Chromium, chromedriver or axe-core
    /// is missing and `TN_REQUIRE_BROWSER` is unset; with it set, a missing one fails.
    pub async fn start() -> Option<Self> {
        let required = std::env::var("TN_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        let chromium = find_binary("chromium");
        let driver = find_binary("chromedriver");
        let axe = axe_path();
        let (Some(chromium), Some(driver), Some(axe)) = (chromium, driver, axe) else {
            assert!(
                !required,
                "TN_REQUIRE_BROWSER=1 but chromium, chromedriver or TN_AXE_JS is missing \
                 (scripts/test installs them)"
            );
            eprintln!(
                "skipped: no chromium + chromedriver on PATH or no TN_AXE_JS (scripts/test \
                 installs them)"
            );
            return None;
        };
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let webdriver = format!("http://127.0.0.1:{port}");
        let probe = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while probe
            .get(format!("{webdriver}/status"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_or(true, |r| !r.status().is_success())
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(crate::helpers::unique("tn_test_chromium"));
        let mut caps = serde_json::Map::new();
        // The flags of a closed network: no background calls home, no first-run work.
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,900",
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&webdriver)
            .await
            .expect("a WebDriver session");
        let axe = std::fs::read_to_string(axe).expect("read axe.min.js");
        Some(Self {
            client,
            _driver: child,
            profile,
            axe,
        })
    }

    /// Opens `url` and returns the page's `h1`.
    pub async fn open(&self, url: &str) -> String {
        self.client.goto(url).await.expect("goto");
        self.text("h1").await
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    /// The first element matching `css` (waiting up to 5 s for it to appear).
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(5))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
    }

    /// Types `text` into the field `css` (cleared first).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    /// Clicks the submit button `css` and waits until the page it leads to has replaced this
    /// one (the old document is marked, and the mark must be gone).
    pub async fn click(&self, css: &str) {
        let button = self.find(css).await;
        self.client
            .execute("document.documentElement.dataset.before = '1';", vec![])
            .await
            .expect("mark the page");
        button.click().await.expect("click");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let old = self
                .client
                .execute(
                    "return document.readyState !== 'complete' || \
                     document.documentElement.dataset.before === '1';",
                    vec![],
                )
                .await
                .unwrap_or(json!(true));
            if old == json!(false) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "clicking `{css}` loaded no page"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The path of the current page.
    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("url")
            .path()
            .to_owned()
    }

    /// axe-core's violations of the current page whose impact is serious or critical, as
    /// `id (impact): help [nodes]`; every violation is printed.
    pub async fn serious_violations(&self) -> Vec<String> {
        let script = format!(
            "{}\nreturn axe.run(document, {{resultTypes: ['violations']}}).then(r => \
             r.violations.map(v => ({{id: v.id, impact: v.impact, help: v.help, \
             nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}})));",
            self.axe
        );
        let found = self.client.execute(&script, vec![]).await.expect("axe.run");
        let list = found.as_array().cloned().unwrap_or_default();
        for v in &list {
            eprintln!("axe: {v}");
        }
        list.iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(|v: &Value| {
                format!(
                    "{} ({}): {} {}",
                    v["id"], v["impact"], v["help"], v["nodes"]
                )
            })
            .collect()
    }

    /// Saves a screenshot of the window at `width` × `height` as `name.png` in the screenshot
    /// folder (`TN_SCREENSHOT_DIR`, else the target's test folder); returns its path.
    pub async fn screenshot(&self, name: &str, width: u32, height: u32) -> PathBuf {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resize");
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = std::env::var_os("TN_SCREENSHOT_DIR").map_or_else(
            || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"),
            PathBuf::from,
        );
        std::fs::create_dir_all(&dir).expect("screenshot folder");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}
