//! `truenumber-loadtest`: drives a running TrueNumber API with one of three mixes at a chosen
//! number of concurrent connections for a chosen time, and reports throughput, latency
//! (mean, p50, p90, p99, max) and responses by status and error code.
//!
//! A purpose-built tokio client rather than a framework such as goose: the mixes are three
//! short loops, the numbers we need are a handful of histograms, and a small client adds less
//! of its own CPU to a machine the server under test shares.
//!
//! It makes its own company (through the same code as `company create`, so it needs
//! `DATABASE_URL`) and mints app tokens with `JWT_SECRET`.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use truenumber_core::{
    companies, companies::app_tokens::AppTokenKeys, config::Config, storage::db,
};

/// Which traffic to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mix {
    /// Read-heavy: status polls of existing sessions.
    Status,
    /// Initiate only (writes).
    Initiate,
    /// The whole flow: initiate → 2 status polls → submit → status.
    Flow,
}

/// Load generator for TrueNumber.
#[derive(Debug, Parser)]
#[command(name = "truenumber-loadtest", version, about)]
struct Args {
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    base_url: String,
    /// Concurrent connections (one client task each).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Seconds to run each mix.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// The mixes to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "status,initiate,flow"
    )]
    mix: Vec<Mix>,
    /// Sessions created up front for the status mix.
    #[arg(long, default_value_t = 200)]
    sessions: usize,
    /// Print one JSON object per mix instead of a table.
    #[arg(long)]
    json: bool,
    /// The load company's webhook URL (default: none, no webhooks). `scripts/soak` points it
    /// at a local receiver (the node must allow private networks).
    #[arg(long)]
    webhook_url: Option<String>,
    /// Milliseconds each connection pauses after each iteration: a steady, realistic rate
    /// (`scripts/soak`) instead of the most the node can take.
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
    /// Write pgbench scripts of TrueNumber's own status SELECT and initiate INSERT (the SQL the
    /// API runs, with pgbench variables for its parameters) and plain one-row references into
    /// this directory, print how many request lanes an API node opens for
    /// `DATABASE_MAX_CONNECTIONS`, and exit.
    #[arg(long, value_name = "DIR")]
    pgbench_scripts: Option<std::path::PathBuf>,
    /// Use this company (with `--api-key`, its live key) instead of making one: how another
    /// build of the API, whose schema this tool's code may not match, is driven by the same
    /// client (`scripts/ab-initiate`). Its rate limits must already be raised.
    #[arg(long, requires = "api_key")]
    company_id: Option<String>,
    /// The live API key of `--company-id`.
    #[arg(long, requires = "company_id")]
    api_key: Option<String>,
}

/// `$1`, `$2`, … of `sql` replaced by pgbench expressions.
fn pgbench_statement(sql: &str, params: &[&str]) -> String {
    let mut out = sql.to_owned();
    // Highest first, so `$1` never eats the start of `$10`.
    for (i, p) in params.iter().enumerate().rev() {
        out = out.replace(&format!("${}", i + 1), p);
    }
    format!("{out};\n")
}

/// The scripts of `--pgbench-scripts`; sessions `ver_1`…`ver_N` of company `bench` must exist.
fn write_pgbench_scripts(dir: &std::path::Path) -> anyhow::Result<()> {
    use truenumber_core::verification::{FIND_FOR_COMPANY_SQL, INITIATE_SQL};
    let status = format!(
        "\\set id random(1, 100000)\n{}",
        pgbench_statement(FIND_FOR_COMPANY_SQL, &["'ver_' || :id"])
    );
    // One random variable per execution: `$4` occurs twice and must be the same value.
    let initiate = format!(
        "\\set r random(1, 9000000000000000)\n{}",
        pgbench_statement(
            INITIATE_SQL,
            &[
                "'ver_' || md5(:r::text)",
                "'+447911123456'",
                "'bench'",
                "'req_' || :r",
                "600",
                "true",
                "NULL",
                "86400",
            ],
        )
    );
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("status.sql"), status)?;
    std::fs::write(dir.join("initiate.sql"), initiate)?;
    std::fs::write(
        dir.join("select.sql"),
        "\\set id random(1, 100000)\nSELECT * FROM bench WHERE id = :id;\n",
    )?;
    std::fs::write(
        dir.join("insert.sql"),
        "INSERT INTO bench (v) VALUES ('x');\n",
    )?;
    Ok(())
}

/// What one client task saw.
struct Tally {
    latency: BTreeMap<&'static str, Histogram<u64>>,
    outcomes: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency: BTreeMap::new(),
            outcomes: BTreeMap::new(),
        }
    }

    fn record(&mut self, endpoint: &'static str, micros: u64, outcome: String) {
        let h = self.latency.entry(endpoint).or_insert_with(new_histogram);
        let _ = h.record(micros.max(1));
        *self.outcomes.entry(outcome).or_insert(0) += 1;
    }

    fn merge(&mut self, other: Tally) {
        for (k, h) in other.latency {
            match self.latency.get_mut(k) {
                Some(mine) => {
                    let _ = mine.add(&h);
                }
                None => {
                    self.latency.insert(k, h);
                }
            }
        }
        for (k, n) in other.outcomes {
            *self.outcomes.entry(k).or_insert(0) += n;
        }
    }
}

/// A latency histogram in microseconds.
#[allow(clippy::expect_used)] // 3 significant figures is within the allowed 0..=5: cannot fail.
fn new_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures is valid")
}

struct Target {
    client: reqwest::Client,
    base: String,
    key: String,
    company: String,
    /// Mints the app's tokens, each bound to the number it confirms.
    tokens: AppTokenKeys,
    /// The next number of the pool ([`number`]), shared by every client task.
    next_number: AtomicUsize,
    sessions: Vec<String>,
    /// A pause after each iteration of a client task (a user's think time; zero under load).
    think: Duration,
}

impl Target {
    fn next_number(&self) -> String {
        number(self.next_number.fetch_add(1, Ordering::Relaxed))
    }
}

/// Whether the caller needs a successful response's JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Parse and return it.
    Wanted,
    /// Read and drop it (the load generator shares the machine: it parses only what it uses).
    Discarded,
}

/// One request; returns the JSON body of a success (if wanted) and records latency and
/// outcome (an error's `code` is always read).
async fn call(
    tally: &mut Tally,
    endpoint: &'static str,
    req: reqwest::RequestBuilder,
    wanted: Body,
) -> Option<Value> {
    let started = Instant::now();
    let result = req.send().await;
    let (outcome, body) = match result {
        Ok(resp) if resp.status().is_success() && wanted == Body::Discarded => {
            let status = resp.status().as_u16();
            match resp.bytes().await {
                Ok(_) => (format!("{endpoint} {status}"), None),
                Err(_) => (format!("{endpoint} io-error"), None),
            }
        }
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body: Option<Value> = resp.json().await.ok();
            let code = body
                .as_ref()
                .and_then(|b| b.get("code"))
                .and_then(Value::as_str)
                .map(|c| format!(" {c}"))
                .unwrap_or_default();
            (
                format!("{endpoint} {status}{code}"),
                body.filter(|_| status < 300),
            )
        }
        Err(e) => {
            let kind = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect-error"
            } else {
                "io-error"
            };
            (format!("{endpoint} {kind}"), None)
        }
    };
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    tally.record(endpoint, micros, outcome);
    body
}

/// The `i`-th number of the load's pool: a million GB mobiles, so that with the per-number
/// limit on (5 per 10 minutes by default) no number of a 30-second run comes near it and
/// the limit's cost is measured, not its refusals.
fn number(i: usize) -> String {
    format!("+447400{:06}", i % 1_000_000)
}

fn initiate(t: &Target, number: &str) -> reqwest::RequestBuilder {
    t.client
        .post(format!("{}/api/v1/verification/initiate", t.base))
        .bearer_auth(&t.key)
        .json(&json!({
            "mobileNumber": number,
            "companyId": t.company,
            "requestId": uuid::Uuid::new_v4().to_string(),
        }))
}

fn status(t: &Target, id: &str) -> reqwest::RequestBuilder {
    t.client
        .get(format!("{}/api/v1/verification/status/{id}", t.base))
        .bearer_auth(&t.key)
}

async fn client_task(t: Arc<Target>, mix: Mix, until: Instant, seed: usize) -> Tally {
    let mut tally = Tally::new();
    let mut i = seed;
    while Instant::now() < until {
        i = i.wrapping_add(7919);
        match mix {
            Mix::Status => {
                let id = &t.sessions[i % t.sessions.len()];
                call(&mut tally, "status", status(&t, id), Body::Discarded).await;
            }
            Mix::Initiate => {
                let number = t.next_number();
                call(
                    &mut tally,
                    "initiate",
                    initiate(&t, &number),
                    Body::Discarded,
                )
                .await;
            }
            Mix::Flow => {
                let number = t.next_number();
                let Some(started) =
                    call(&mut tally, "initiate", initiate(&t, &number), Body::Wanted).await
                else {
                    continue;
                };
                let Some(id) = started["verificationId"].as_str().map(str::to_owned) else {
                    continue;
                };
                for _ in 0..2 {
                    call(&mut tally, "status", status(&t, &id), Body::Discarded).await;
                }
                // As the app's identity provider would: a token bound to the number it proved.
                let Ok(token) = t.tokens.mint("loadtest", Some(&number), 3600) else {
                    tally.record("submit", 0, "submit token-error".into());
                    continue;
                };
                let submit = t
                    .client
                    .post(format!("{}/api/v1/verification/submit", t.base))
                    .bearer_auth(&token)
                    .json(&json!({"verificationId": id, "userConfirmedNumber": number, "appUserId": "loadtest"}));
                call(&mut tally, "submit", submit, Body::Discarded).await;
                call(&mut tally, "status", status(&t, &id), Body::Discarded).await;
            }
        }
        if !t.think.is_zero() {
            tokio::time::sleep(t.think).await;
        }
    }
    tally
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    truenumber_core::observability::telemetry::run_named("tn-loadtest", run())?
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.pgbench_scripts {
        write_pgbench_scripts(dir)?;
        let total = std::env::var("DATABASE_MAX_CONNECTIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(truenumber_core::config::default_pool_size);
        println!("{}", truenumber_core::storage::lanes::api_split(total).1);
        return Ok(());
    }
    truenumber_core::observability::telemetry::install_crypto_provider();
    // Against a standalone node (TN_LOADTEST_STANDALONE=1), the company is made in its SQLite
    // file in DATA_DIR (WAL lets this process in beside the node).
    let config = if std::env::var("TN_LOADTEST_STANDALONE").is_ok_and(|v| v == "1") {
        Config::standalone_from_lookup(|n| std::env::var(n).ok())
            .context("loadtest reads DATA_DIR and JWT_SECRET")?
    } else {
        Config::from_env().context("loadtest reads DATABASE_URL and JWT_SECRET")?
    };
    let (company, key) = match (&args.company_id, &args.api_key) {
        (Some(company), Some(key)) => (company.clone(), key.clone()),
        _ => {
            let dbc = db::connect(&config).await?;
            let company = format!("loadtest_{}", uuid::Uuid::new_v4().simple());
            let created =
                companies::create_company(&dbc, &company, "Load test", args.webhook_url.as_deref())
                    .await?;
            companies::set_rate_limits(
                &dbc,
                &company,
                Some(i32::MAX as u32),
                Some(i32::MAX as u32),
            )
            .await?;
            (company, created.api_key.expose().to_owned())
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut target = Target {
        client,
        base: args.base_url.trim_end_matches('/').to_owned(),
        key,
        company,
        tokens: AppTokenKeys::new(&config.jwt_secret),
        next_number: AtomicUsize::new(0),
        sessions: Vec::new(),
        think: Duration::from_millis(args.think_ms),
    };
    let mut warm = Tally::new();
    for _ in 0..args.sessions.max(1) {
        let number = target.next_number();
        if let Some(id) = call(
            &mut warm,
            "initiate",
            initiate(&target, &number),
            Body::Wanted,
        )
        .await
        .and_then(|b| b["verificationId"].as_str().map(str::to_owned))
        {
            target.sessions.push(id);
        }
    }
    anyhow::ensure!(
        !target.sessions.is_empty(),
        "could not create any session: {:?}",
        warm.outcomes
    );
    let target = Arc::new(target);

    for mix in &args.mix {
        let started = Instant::now();
        let until = started + Duration::from_secs(args.duration);
        let tasks: Vec<_> = (0..args.connections)
            .map(|i| tokio::spawn(client_task(target.clone(), *mix, until, i)))
            .collect();
        let mut total = Tally::new();
        for t in futures::future::join_all(tasks).await {
            total.merge(t?);
        }
        let secs = started.elapsed().as_secs_f64();
        report(*mix, &args, secs, &total);
    }
    Ok(())
}

fn report(mix: Mix, args: &Args, secs: f64, total: &Tally) {
    let mut endpoints = serde_json::Map::new();
    for (name, h) in &total.latency {
        endpoints.insert(
            (*name).to_owned(),
            json!({
                "requests": h.len(),
                "rps": (h.len() as f64 / secs).round(),
                "mean_ms": (h.mean() / 10.0).round() / 100.0,
                "p50_ms": ms(h.value_at_quantile(0.50)),
                "p90_ms": ms(h.value_at_quantile(0.90)),
                "p99_ms": ms(h.value_at_quantile(0.99)),
                "max_ms": ms(h.max()),
            }),
        );
    }
    let summary = json!({
        "mix": format!("{mix:?}").to_lowercase(),
        "connections": args.connections,
        "seconds": (secs * 10.0).round() / 10.0,
        "endpoints": endpoints,
        "outcomes": total.outcomes,
    });
    if args.json {
        println!("{summary}");
        return;
    }
    println!(
        "\n== mix {:?}: {} connections, {:.1} s",
        mix, args.connections, secs
    );
    println!(
        "{:<10} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "endpoint", "requests", "req/s", "mean ms", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for (name, h) in &total.latency {
        println!(
            "{:<10} {:>9} {:>8.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            name,
            h.len(),
            h.len() as f64 / secs,
            h.mean() / 1000.0,
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.90)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max())
        );
    }
    println!("responses:");
    for (outcome, n) in &total.outcomes {
        println!("  {outcome:<40} {n}");
    }
}
