//! `flowgate tokens create|list|revoke`: API tokens in the embedded store. Exit codes: 0
//! done, 1 no such token, 2 bad usage or configuration.

use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;

use flowgate_core::ports::{TokenRecord, Tokens};
use flowgate_core::usecases::tokens;
use flowgate_embedded::{DB_FILE, Embedded, EmbeddedConfig};
use flowgate_settings::{Backend, Settings};

use crate::config::{TokensArgs, TokensCommand};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Runs a `tokens` command.
pub async fn run(args: TokensArgs) -> Result<ExitCode> {
    let store = open(&args.settings.0)?;
    match args.command {
        TokensCommand::Create {
            tenant,
            scope,
            rate,
            json,
        } => {
            let made = tokens::create(store.as_ref(), &tenant, &scope, rate).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"token": made.secret, "id": made.record.id,
                        "tenant": made.record.tenant, "scopes": made.record.scopes,
                        "rate": made.record.rate})
                );
            } else {
                println!("{}", made.secret);
                eprintln!(
                    "token {} for tenant {} ({}); it is shown only now",
                    made.record.id,
                    made.record.tenant,
                    scopes(&made.record)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokensCommand::List { json } => {
            let all = store.list_tokens().await.map_err(|e| e.chain())?;
            if json {
                let rows: Vec<_> = all.iter().map(public).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_rows(&all);
            }
            Ok(ExitCode::SUCCESS)
        }
        TokensCommand::Revoke { id } => {
            if store
                .revoke_token(&id, Utc::now())
                .await
                .map_err(|e| e.chain())?
            {
                eprintln!("token {id} revoked");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no token {id}; `flowgate tokens list` shows them");
                Ok(ExitCode::from(1))
            }
        }
    }
}

/// The embedded store of the data directory, which must exist: tokens live beside the data.
fn open(settings: &Settings) -> Result<Arc<dyn Tokens>> {
    if settings.backend != Backend::Embedded {
        return Err(
            "tokens are kept by the embedded backend; on AWS the API gateway \
                    authenticates (IAM or JWT)"
                .into(),
        );
    }
    if !settings.data_dir.join(DB_FILE).exists() {
        std::fs::create_dir_all(&settings.data_dir)
            .map_err(|e| format!("cannot create {}: {e}", settings.data_dir.display()))?;
    }
    Ok(Embedded::open(
        &settings.data_dir,
        EmbeddedConfig::from_settings(settings),
    )?)
}

fn scopes(t: &TokenRecord) -> String {
    t.scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// A token as `list --json` shows it: never its hash.
fn public(t: &TokenRecord) -> serde_json::Value {
    serde_json::json!({"id": t.id, "tenant": t.tenant, "scopes": t.scopes, "rate": t.rate,
        "created_at": t.created_at, "revoked_at": t.revoked_at})
}

fn print_rows(all: &[TokenRecord]) {
    println!(
        "{:<12}  {:<24}  {:<16}  {:>6}  {:<20}  REVOKED",
        "ID", "TENANT", "SCOPES", "RATE", "CREATED"
    );
    for t in all {
        println!(
            "{:<12}  {:<24}  {:<16}  {:>6}  {:<20}  {}",
            t.id,
            t.tenant,
            scopes(t),
            t.rate.map_or("-".to_owned(), |r| r.to_string()),
            t.created_at.format("%Y-%m-%d %H:%M:%S"),
            t.revoked_at.map_or("-".to_owned(), |r| r
                .format("%Y-%m-%d %H:%M:%S")
                .to_string())
        );
    }
}
