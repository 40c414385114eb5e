//! The client side of the commands that drive a running host over its
//! internal API (`rulehost plugins`, `rulehost provisioning`): where the
//! host is, which token to send, and how an answer becomes an exit code.
//!
//! Exit status: 0 ok; 1 the host answered with an error (its message is
//! printed); 2 the host cannot be reached, or the command is malformed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use super::format::fit;

/// Where the host is and which token to send.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The host's internal API.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "RULEHOST_HOST",
        default_value = "http://127.0.0.1:7700"
    )]
    pub host: String,
    /// A file holding the API token to send [default: `RULEHOST_TOKEN`,
    /// else `rulehost.db.operator-token` if it exists here].
    #[arg(long, global = true, value_name = "FILE", env = "RULEHOST_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// The operator token file of the default database in this folder.
const DEFAULT_TOKEN_FILE: &str = "rulehost.db.operator-token";

impl ApiArgs {
    /// The token to send: `--token-file`, else `RULEHOST_TOKEN`, else the
    /// default database's operator token file when there is one.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map(|t| t.trim().to_owned())
                .with_context(|| format!("cannot read the token file `{}`", path.display()))
        };
        if let Some(path) = &self.token_file {
            return read(path).map(Some);
        }
        if let Ok(token) = std::env::var("RULEHOST_TOKEN") {
            return Ok(Some(token.trim().to_owned()));
        }
        let default = Path::new(DEFAULT_TOKEN_FILE);
        if default.exists() {
            return read(default).map(Some);
        }
        Ok(None)
    }
}

/// A command's result as its exit code: 1 with the host's message when it
/// refused, the error (exit 2) when the command could not run.
pub fn finish(result: Result<(), Failure>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(Failure::Answered(message)) => {
            eprintln!("error: {message}");
            Ok(ExitCode::from(1))
        }
        Err(Failure::CannotRun(e)) => Err(e),
    }
}

/// Why a command stopped.
pub enum Failure {
    /// The host answered with an error: exit 1.
    Answered(String),
    /// The host cannot be reached, answered nonsense, or the command is wrong: exit 2.
    CannotRun(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::CannotRun(e)
    }
}

pub struct Host {
    pub base: String,
    /// `Bearer <token>`, when there is a token to send.
    authorization: Option<String>,
    agent: ureq::Agent,
}

impl Host {
    pub fn new(base: &str, token: Option<String>) -> Host {
        Host {
            base: base.trim_end_matches('/').to_owned(),
            authorization: token.map(|t| format!("Bearer {t}")),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                // A rollback compiles and runs the service's cases.
                .timeout_global(Some(Duration::from_secs(60)))
                .user_agent(concat!("rulehost/", env!("CARGO_PKG_VERSION")))
                .build()
                .into(),
        }
    }

    pub fn get(&self, path: &str) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url);
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        self.answer(&url, request.call())
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .agent
            .post(&url)
            .header("content-type", "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        let result = request.send(body.to_string());
        self.answer(&url, result)
    }

    fn answer(
        &self,
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, Failure> {
        let response = result.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the host at {}: {e} (is `rulehost serve` running there? set --host or RULEHOST_HOST)",
                self.base
            )
        })?;
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .read_to_string()
            .with_context(|| format!("cannot read the answer of {url}"))?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        if (200..300).contains(&status) {
            return body.ok_or_else(|| {
                Failure::CannotRun(anyhow::anyhow!(
                    "{url} answered {status} with something other than JSON; is {} a rulehost?",
                    self.base
                ))
            });
        }
        let message = body
            .as_ref()
            .and_then(|b| b["error"]["message"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{status}: {}", fit(text.trim(), 200)));
        if status == 401 {
            return Err(Failure::Answered(format!(
                "{message} (give an operator or viewer token: --token-file FILE or RULEHOST_TOKEN)"
            )));
        }
        Err(Failure::Answered(message))
    }
}

pub fn parse<T: for<'de> Deserialize<'de>>(value: Value, what: &str) -> Result<T, Failure> {
    serde_json::from_value(value)
        .with_context(|| format!("the host's answer to {what} has an unexpected shape"))
        .map_err(Failure::CannotRun)
}

pub fn print_json(value: &Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).context("cannot print the answer")?;
    println!("{text}");
    Ok(())
}
