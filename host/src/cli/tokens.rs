//! `rulehost tokens create|list|revoke`: the internal API's tokens, in the
//! database itself (beside a running host or without one; a revocation
//! reaches a running host within a second).
//!
//! Exit status: 0 ok; 2 the command could not run (a bad argument, an
//! unknown token, an unreadable database).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::format::table;
use crate::auth::{self, Role};
use crate::store::tokens::TokenRow;
use crate::store::{self, Store, rfc3339};

#[derive(Debug, Args)]
pub struct TokensArgs {
    /// The SQLite database of the host.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "rulehost.db"
    )]
    db: PathBuf,
    #[command(subcommand)]
    command: TokensCommand,
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Make a token and print it, once: it is stored only as a hash.
    Create {
        /// operator (everything), service (checks and accounts of its
        /// services, their requests and decisions) or viewer (reads only).
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// A service the token acts for (`--role service`; repeat for more).
        #[arg(long = "service", value_name = "ID")]
        services: Vec<String>,
        /// A name to list and revoke it by [default: the role, then role-2, …].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Every token with its role, services and times (never the tokens).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id or name.
    Revoke {
        /// The token's id (`tok_…`) or name.
        token: String,
    },
}

pub fn run(args: TokensArgs) -> anyhow::Result<ExitCode> {
    if !matches!(args.command, TokensCommand::Create { .. }) && !args.db.exists() {
        anyhow::bail!(
            "no database at `{}`: give the host's --db",
            args.db.display()
        );
    }
    let store = Store::open(&args.db)?;
    match args.command {
        TokensCommand::Create {
            role,
            services,
            name,
        } => {
            let role = Role::parse(&role)?;
            let made = auth::create(&store, role, services, name, store::now_ms())?;
            eprintln!(
                "made {} token `{}` ({}){}; it is shown this once, store it now:",
                made.row.role,
                made.row.name,
                made.row.id,
                for_services(&made.row)
            );
            println!("{}", made.token);
        }
        TokensCommand::List { json } => {
            let rows = auth::list(&store)?;
            if json {
                let rows: Vec<_> = rows.iter().map(view).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"tokens": rows}))?
                );
            } else {
                print_table(&rows);
            }
        }
        TokensCommand::Revoke { token } => {
            let revoked = auth::revoke(&store, &token, store::now_ms())?;
            println!(
                "revoked {} token `{}` ({})",
                revoked.role, revoked.name, revoked.id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn for_services(row: &TokenRow) -> String {
    if row.services.is_empty() {
        String::new()
    } else {
        format!(" for {}", row.services.join(", "))
    }
}

fn view(row: &TokenRow) -> serde_json::Value {
    json!({
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "services": row.services,
        "created_at": rfc3339(row.created_at),
        "last_used_at": row.last_used_at.map(rfc3339),
        "revoked_at": row.revoked_at.map(rfc3339),
    })
}

fn print_table(rows: &[TokenRow]) {
    let when = |ms: Option<i64>| ms.map_or_else(|| "-".to_owned(), rfc3339);
    let head = [
        "ID",
        "NAME",
        "ROLE",
        "SERVICES",
        "CREATED",
        "LAST USED",
        "REVOKED",
    ];
    let body: Vec<Vec<String>> = std::iter::once(head.map(str::to_owned).to_vec())
        .chain(rows.iter().map(|r| {
            vec![
                r.id.clone(),
                r.name.clone(),
                r.role.clone(),
                if r.services.is_empty() {
                    "-".to_owned()
                } else {
                    r.services.join(",")
                },
                rfc3339(r.created_at),
                when(r.last_used_at),
                when(r.revoked_at),
            ]
        }))
        .collect();
    print!("{}", table(&body));
    println!("{} tokens", rows.len());
}
