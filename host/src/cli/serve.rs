//! `rulehost serve`: the host, with its internal API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::PluginArgs;

use super::config::HostConfig;
use crate::auth::{self, FirstToken, Tokens};
use crate::entitlement::{self, Entitlement, Settings};
use crate::flow::{Driver, FlowEngine, Roles, load_definitions};
use crate::http::edge::{self, ErrorBody, Limits, Listener, descriptors};
use crate::http::{self, AppState, Metrics};
use crate::notify::{DeliveryWorker, Signal};
use crate::plans::{Plans, Sweeper};
use crate::provisioning::Provisioning;
use crate::registry::{Live, Sources, Watcher};
use crate::sessions::Sessions;
use crate::store::retention::{PruneStats, Pruner};
use crate::store::{self, Store, StoreOptions};

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
    /// Address of the public site (reconciliation pages only). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7701")]
    public_listen: SocketAddr,
    /// The host's settings: [mail] smtp, [internal] and [public] listener limits, [public] url, [reconciliation], [outbox], [store], [retention], [auth].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    plugins: PluginArgs,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = args.plugins.runtime(false)?;
    let config = args.config.as_deref().map(HostConfig::load).transpose();
    let store_options = match &config {
        Ok(Some(config)) => config.store.options(),
        _ => StoreOptions::default(),
    };
    let store = Store::open_with(&args.db, store_options)?;
    let sources = Sources {
        rules_dir: args.rules.clone(),
        plugins_dir: args.plugins.plugins.clone(),
    };
    // The plugins live before a restart come back from the store, not the files.
    let (live, diagnostics) = Live::start(runtime, sources, store.clone())?;
    let live = Arc::new(live);
    let (definitions, flow_problems) = load_definitions(&args.rules);
    let roles = Roles::load(&args.rules);
    let mut problems: Vec<_> = diagnostics
        .iter()
        .chain(&flow_problems)
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    problems.extend(roles.as_ref().err().cloned());
    problems.extend(config.as_ref().err().cloned());
    if !problems.is_empty() {
        for d in &problems {
            eprintln!("{d}");
        }
        eprintln!(
            "refusing to serve: fix the problems above (`rulehost check {}` lists those in the rules)",
            args.rules.display()
        );
        // Could not run (2); 1 is for failures found.
        return Ok(ExitCode::from(2));
    }
    let (roles, config) = (
        roles.unwrap_or_default(),
        config.ok().flatten().unwrap_or_default(),
    );
    // A fresh database gets its first operator token, in a file only its
    // owner can read; the token itself is never printed or logged.
    let token_file = config.auth.operator_token_file(&args.db);
    match auth::first_operator(&store, &token_file, store::now_ms())? {
        FirstToken::Written(path) => {
            println!(
                "rulehost wrote the operator token of this new database to {} (readable by its owner only; send it as `Authorization: Bearer $(cat {})`)",
                path.display(),
                path.display()
            );
        }
        FirstToken::Exists { live: true } => {}
        FirstToken::Exists { live: false } => {
            tracing::warn!(
                "every operator token of this database is revoked: make one with `rulehost tokens create --role operator --db {}`",
                args.db.display()
            );
        }
    }
    let tokens = Arc::new(Tokens::new(store.clone()));
    let (internal_limits, public_limits) = listener_limits(&config)?;
    let outbox_signal = Arc::new(Signal::default());
    let registry = live.registry();
    let services = registry.load().services.len();

    // Bind both listeners first: the public URL may depend on the port.
    let async_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rulehost-http")
        .build()
        .context("cannot start the async runtime")?;
    let (listener, public_listener) = async_runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let public = tokio::net::TcpListener::bind(args.public_listen)
            .await
            .with_context(|| {
                format!("cannot listen on {} (the public site)", args.public_listen)
            })?;
        anyhow::Ok((listener, public))
    })?;
    let address = listener.local_addr()?;
    let public_address = public_listener.local_addr()?;

    let mut settings = Settings {
        public_url: config
            .public
            .url
            .clone()
            .unwrap_or_else(|| format!("http://{public_address}")),
        mail: config.mail.is_some(),
        ..Settings::default()
    };
    if let Some(seconds) = config.reconciliation.sync_window_seconds {
        settings.sync_window = Duration::from_secs(seconds);
    }
    if let Some(n) = config.reconciliation.max_attempts {
        settings.max_attempts = n.max(1);
    }
    if let Some(seconds) = config.reconciliation.lock_seconds {
        settings.first_lock = Duration::from_secs(seconds);
    }
    if let Some(seconds) = config.reconciliation.max_lock_seconds {
        settings.max_lock = Duration::from_secs(seconds);
    }
    if let Some(other) = config.reconciliation.other_account {
        settings.other_account = other;
    }
    let provisioning_settings = config
        .provisioning
        .settings(settings.public_url.clone(), settings.mail);
    let mut engine = FlowEngine::new(store.clone(), definitions, roles, outbox_signal.clone());
    let installed = entitlement::install(&mut engine, store.clone(), registry, settings);
    crate::provisioning::install(&mut engine, provisioning_settings.clone());
    let plan_resets = Arc::new(Signal::default());
    crate::plans::install(&mut engine, plan_resets.clone());
    let engine = Arc::new(engine);
    let entitlement = Arc::new(Entitlement::new(
        installed,
        engine.clone(),
        outbox_signal.clone(),
    ));
    // Records past their retention are deleted in small batches beside the serving.
    let pruned = Arc::new(PruneStats::default());
    let mut pruner = Pruner::start(
        store.clone(),
        config.retention.policy(),
        config.retention.interval(),
        pruned.clone(),
    )
    .context("cannot start the pruner")?;
    let sessions = Arc::new(Sessions::new(
        store.clone(),
        live.registry(),
        outbox_signal.clone(),
    ));
    let provisioning = Arc::new(Provisioning::new(
        store.clone(),
        live.registry(),
        engine.clone(),
        outbox_signal.clone(),
        provisioning_settings,
    ));
    let mut worker = DeliveryWorker::start_with(
        store,
        outbox_signal,
        config.mail.clone(),
        config.outbox.policy(),
    )
    .context("cannot start the outbox worker")?;
    let mut driver = Driver::start(engine.clone()).context("cannot start the flow driver")?;
    // Plugins and rules changed on disk are validated and swapped while serving.
    let watcher = Watcher::start(live.clone()).map_err(anyhow::Error::msg)?;
    tracing::info!(services, flows = engine.definitions().len(), db = %args.db.display(), "rulehost starting");

    let plans = Arc::new(Plans::new(
        entitlement.store().clone(),
        live.registry(),
        config.plans.settings(),
    ));
    // Reset conditions by time: a timer flow wakes this sweeper.
    let mut sweeper = Sweeper::start(
        plans.clone(),
        engine.clone(),
        plan_resets,
        Duration::from_secs(plans.settings().reset_sweep_secs),
    )
    .context("cannot start the plan reset sweeper")?;
    let public_provisioning = provisioning.clone();
    let state = AppState {
        engine,
        live,
        entitlement: entitlement.clone(),
        plans,
        sessions,
        provisioning,
        metrics: Arc::new(Metrics::default()),
        pruned,
        tokens,
        open: config.auth.open_routes(),
    };
    let served = async_runtime.block_on(async move {
        println!("rulehost listening on http://{address}");
        println!("rulehost public site on http://{public_address}");
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let internal = tokio::spawn(edge::serve(
            Listener::Internal,
            listener,
            http::router(state),
            internal_limits,
            ErrorBody::Json,
            stop.clone(),
        ));
        let public = tokio::spawn(edge::serve(
            Listener::Public,
            public_listener,
            http::public::router(entitlement, public_provisioning),
            public_limits,
            ErrorBody::Html,
            stop,
        ));
        shutdown_signal().await;
        let _ = stop_tx.send(true);
        let (internal, public) = (internal.await, public.await);
        internal.and(public).context("the server failed")
    });
    // In-flight requests are done; let the workers finish what they hold.
    drop(watcher);
    sweeper.stop();
    driver.stop();
    worker.stop();
    pruner.stop();
    served?;
    tracing::info!("rulehost stopped");
    Ok(ExitCode::SUCCESS)
}

/// Each listener's limits from the settings, the connection bounds sized
/// to the open-files limit (raised to its hard limit first).
fn listener_limits(config: &HostConfig) -> anyhow::Result<(Limits, Limits)> {
    let (mut internal, mut public) = (config.internal.limits(), config.public.limits());
    let open_files = descriptors::raise_limit();
    let budget = descriptors::share(open_files, internal.max_connections, public.max_connections)
        .map_err(anyhow::Error::msg)?;
    if (budget.internal, budget.public) != (internal.max_connections, public.max_connections) {
        tracing::warn!(
            open_files,
            internal = budget.internal,
            public = budget.public,
            "the open-files limit is below [internal] and [public] max_connections with {} to spare: the listeners take fewer connections; raise `ulimit -n` to take all",
            descriptors::RESERVED
        );
    }
    internal.max_connections = budget.internal;
    public.max_connections = budget.public;
    Ok((internal, public))
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
