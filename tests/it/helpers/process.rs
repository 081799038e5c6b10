//! The binaries as their users run them: operator commands parsed by clap and executed as the
//! binary does ([`cli_run`]), and a node or worker in a child process of its own
//! ([`spawn_process`], for tests that kill one).

use std::{
    collections::HashMap,
    process::{Child, Command},
};

use clap::Parser;
use serde_json::Value;
use truenumber_api::cli::{self, Cli};
use truenumber_core::config::Config;

/// The environment variable that carries a child process's configuration.
pub const PROCESS_ENV: &str = "TN_TEST_PROCESS_ENV";

/// Runs `truenumber-api <args>` with `config`; its stdout.
pub async fn cli_run(config: &Config, args: &[&str]) -> anyhow::Result<String> {
    let mut argv = vec!["truenumber-api"];
    argv.extend_from_slice(args);
    let command = Cli::try_parse_from(argv)?
        .command
        .unwrap_or(cli::Command::Serve);
    let mut out = Vec::new();
    cli::execute(command, config.clone(), &mut out).await?;
    Ok(String::from_utf8(out)?)
}

/// [`cli_run`], which must succeed, with its output parsed as JSON.
pub async fn cli_json(config: &Config, args: &[&str]) -> Value {
    serde_json::from_str(&cli_run(config, args).await.unwrap()).unwrap()
}

/// Starts `entry` (an ignored test that reads [`PROCESS_ENV`]) in a child process with `env`
/// as its configuration.
pub fn spawn_process(entry: &str, env: &HashMap<String, String>) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", entry, "--nocapture"])
        .env(PROCESS_ENV, serde_json::to_string(env).unwrap())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}
