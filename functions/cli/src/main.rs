//! The `flowgate` binary: the local server and the client commands.

mod access;
mod audit;
mod aws;
mod backend;
mod backfill;
mod bench;
mod bench_disk;
mod bench_dispatch;
mod bench_kit;
mod bench_plot;
mod bench_schedules;
mod client;
mod config;
mod dlq;
mod listener;
mod observe;
#[cfg(feature = "otlp")]
mod otlp;
mod schedules;
mod serve;
mod telemetry;
mod tokens;
mod ui;

use std::process::ExitCode;

use clap::Parser;

use config::{Cli, Command};

/// mimalloc: see the workspace's Cargo.toml (docs/benchmarks.md has the measurement).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flowgate: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(settings) => serve::run(settings.0).await,
            Command::Submit(args) => {
                client::submit(&client::http(&cli.token)?, &cli.url, args).await
            }
            Command::Status(args) => {
                client::status(&client::http(&cli.token)?, &cli.url, args).await
            }
            Command::Workflows(cmd) => {
                client::workflows(&client::http(&cli.token)?, &cli.url, cmd).await
            }
            Command::Backfill(cmd) => {
                backfill::run(&client::http(&cli.token)?, &cli.url, cmd).await
            }
            Command::Schedules(cmd) => {
                schedules::run(&client::http(&cli.token)?, &cli.url, cmd).await
            }
            Command::Audit(args) => audit::run(&client::http(&cli.token)?, &cli.url, args).await,
            Command::Bench(args) => bench::run(&client::http(&cli.token)?, &cli.url, args).await,
            Command::Aws(args) => aws::run(args).await,
            Command::Dlq(args) => dlq::run(args).await,
            Command::Tokens(args) => tokens::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flowgate: {e}");
            ExitCode::from(2)
        }
    }
}
