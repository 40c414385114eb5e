//! `rulehost serve`: the host, with its internal API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;

use super::{PluginArgs, load};
use crate::flow::{Driver, FlowEngine, Roles, load_definitions};
use crate::http::{self, AppState, Metrics};
use crate::notify::{DeliveryWorker, Signal};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the internal API. Port 0 picks a free port; the address
    /// is printed once listening.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// The SQLite database (created if missing).
    #[arg(long, value_name = "PATH", default_value = "rulehost.db")]
    db: PathBuf,
    /// The rules folder: service manifests, flows/, roles.toml.
    #[arg(long, value_name = "DIR", default_value = "rules")]
    rules: PathBuf,
    #[command(flatten)]
    plugins: PluginArgs,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = args.plugins.runtime(false)?;
    let loaded = load(&runtime, &args.rules, &args.plugins);
    let (definitions, flow_problems) = load_definitions(&args.rules);
    let roles = Roles::load(&args.rules);
    let mut problems: Vec<_> = loaded
        .diagnostics
        .iter()
        .chain(&flow_problems)
        .filter(|d| d.is_error())
        .collect();
    if let Err(d) = &roles {
        problems.push(d);
    }
    if !problems.is_empty() {
        for d in &problems {
            eprintln!("{d}");
        }
        eprintln!(
            "refusing to serve: fix the rules above (`rulehost check {}` lists them)",
            args.rules.display()
        );
        return Ok(ExitCode::from(1));
    }
    let roles = roles.unwrap_or_default();
    let store = Store::open(&args.db)?;
    let outbox_signal = Arc::new(Signal::default());
    let engine = Arc::new(FlowEngine::new(
        store.clone(),
        definitions,
        roles,
        outbox_signal.clone(),
    ));
    let mut worker =
        DeliveryWorker::start(store, outbox_signal).context("cannot start the outbox worker")?;
    let mut driver = Driver::start(engine.clone()).context("cannot start the flow driver")?;
    tracing::info!(
        services = loaded.registry.services.len(),
        flows = engine.definitions().len(),
        db = %args.db.display(),
        "rulehost starting"
    );

    let state = AppState {
        engine,
        metrics: Arc::new(Metrics::default()),
    };
    let served = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rulehost-http")
        .build()
        .context("cannot start the async runtime")?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            let address = listener.local_addr()?;
            println!("rulehost listening on http://{address}");
            axum::serve(listener, http::router(state))
                .with_graceful_shutdown(shutdown_signal())
                .await
                .context("the server failed")
        });
    // In-flight requests are done; let the workers finish what they hold.
    driver.stop();
    worker.stop();
    served?;
    tracing::info!("rulehost stopped");
    Ok(ExitCode::SUCCESS)
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot listen for SIGTERM: {e}");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: finishing in-flight requests");
}
