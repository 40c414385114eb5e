//! `rulehost provisioning demo`: the walk-through's people, made on a
//! running host over its internal API (an operator token): organization
//! `acme`, which owns the sample services `support-contract` and
//! `premium-support`, with its administrator `alice` and a member `bob`;
//! organization `initech` with `ann`, who has an account already when she
//! is invited. Each new user gets a random password, printed once. Running
//! it again keeps what exists (and prints no password for it).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::client::{ApiArgs, Failure, Host, finish};

#[derive(Debug, Args)]
pub struct ProvisioningArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: ProvisioningCommand,
}

#[derive(Debug, Subcommand)]
enum ProvisioningCommand {
    /// Make the walk-through's organizations and users (see the README).
    Demo {
        /// The public site's address, for the hints printed at the end.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:7701")]
        public: String,
    },
}

/// (id, name, services owned)
const ORGANIZATIONS: [(&str, &str, &[&str]); 2] = [
    (
        "acme",
        "Acme Support",
        &["support-contract", "premium-support"],
    ),
    ("initech", "Initech", &[]),
];

/// (id, organization, name, administrator)
const USERS: [(&str, &str, &str, bool); 3] = [
    ("alice", "acme", "Alice Admin", true),
    ("bob", "acme", "Bob Member", false),
    ("ann", "initech", "Ann Invitee", true),
];

pub fn run(args: ProvisioningArgs) -> anyhow::Result<ExitCode> {
    let host = Host::new(&args.api.host, args.api.token()?);
    let result = match args.command {
        ProvisioningCommand::Demo { public } => demo(&host, &public),
    };
    finish(result)
}

/// A password for a demo user: 96 random bits, in hex.
fn password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no secure randomness to make a password: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Whether the host refused because the thing exists already.
fn exists(result: &Result<serde_json::Value, Failure>) -> bool {
    matches!(result, Err(Failure::Answered(m)) if m.contains("exists already"))
}

fn demo(host: &Host, public: &str) -> Result<(), Failure> {
    for (id, name, owns) in ORGANIZATIONS {
        let made = host.post(
            "/v1/organizations",
            &json!({"id": id, "name": name, "owns": owns}),
        );
        if exists(&made) {
            println!("organization {id}: exists already, kept");
        } else {
            made?;
            println!(
                "organization {id} ({name}) owns: {}",
                if owns.is_empty() {
                    "nothing".to_owned()
                } else {
                    owns.join(", ")
                }
            );
        }
    }
    for (id, organization, name, admin) in USERS {
        let password = password()?;
        let body = json!({
            "id": id, "organization": organization, "name": name, "admin": admin,
            "email": format!("{id}@{organization}.example"), "password": password,
        });
        let made = host.post("/v1/users", &body);
        if exists(&made) {
            println!("user {id}: exists already, kept (its password was printed when it was made)");
        } else {
            made?;
            let role = if admin { "administrator" } else { "member" };
            println!("user {id} ({role} of {organization}) password: {password}");
        }
    }
    println!(
        "\nSign in as alice at {}/provider to offer premium-support, or see the README's walk-through.",
        public.trim_end_matches('/')
    );
    Ok(())
}
