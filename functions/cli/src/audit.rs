//! `flowgate audit --from --to [--json]`: a client command over HTTP. It prints where every
//! request the token's tenant accepted in the window is, by workflow, whether they add up,
//! and each overdue request; it exits 1 when they do not add up or a request is overdue.

use std::process::ExitCode;

use clap::Args;

use flowgate_core::usecases::audit::{Audit, AuditParams, Counts};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Options of `flowgate audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The window.
    #[command(flatten)]
    pub window: AuditParams,
    /// The answer as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Runs the audit against `url`.
pub async fn run(client: &reqwest::Client, url: &str, args: AuditArgs) -> Result<ExitCode> {
    let query = serde_urlencoded::to_string([
        ("from", args.window.from.to_rfc3339()),
        ("to", args.window.to.to_rfc3339()),
    ])?;
    let response = client
        .get(format!("{url}/v1/audit?{query}"))
        .send()
        .await
        .map_err(|e| format!("cannot reach the server: {e} (is `flowgate serve` running?)"))?;
    if !response.status().is_success() {
        eprintln!("{}", response.text().await?);
        return Ok(ExitCode::from(2));
    }
    let text: String = response.text().await?;
    let audit: Audit = serde_json::from_str(&text)?;
    if args.json {
        println!("{text}");
    } else {
        print!("{}", report(&audit));
    }
    let clean = audit.invariant.holds && audit.total.overdue == 0;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The audit as a table and its findings.
fn report(audit: &Audit) -> String {
    let mut out = format!(
        "requests accepted from {} to {} (as of {}, grace {}s)\n",
        audit.from.to_rfc3339(),
        audit.to.to_rfc3339(),
        audit.as_of.to_rfc3339(),
        audit.grace_seconds
    );
    out.push_str(&format!(
        "{:<32} {:>9} {:>9} {:>10} {:>7} {:>9} {:>8}\n",
        "workflow", "accepted", "created", "dispatched", "dead", "in_flight", "overdue"
    ));
    let row = |name: &str, c: &Counts| {
        format!(
            "{:<32} {:>9} {:>9} {:>10} {:>7} {:>9} {:>8}\n",
            name, c.accepted, c.created, c.dispatched, c.dead, c.in_flight, c.overdue
        )
    };
    for (workflow, counts) in &audit.by_workflow {
        out.push_str(&row(workflow, counts));
    }
    out.push_str(&row("(all)", &audit.total));
    out.push_str(&format!(
        "{}: {}\n",
        audit.invariant.equation,
        if audit.invariant.holds {
            "holds"
        } else {
            "DOES NOT HOLD"
        }
    ));
    for overdue in &audit.overdue_requests {
        out.push_str(&format!(
            "overdue: request {} of {}, {}s since its last send\n",
            overdue.request_id, overdue.workflow, overdue.age_seconds
        ));
    }
    for id in &audit.unaccounted_requests {
        out.push_str(&format!(
            "unaccounted: request {id} (its instance is missing)\n"
        ));
    }
    if let Some(note) = &audit.note {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}
