//! `flowgate dlq`: list, show, replay, archive and restore dead letters, on the backend
//! directly. Exit codes: 0 all done, 1 some letters failed, 2 bad usage or configuration.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};

use flowgate_core::usecases::dlq::{
    Action, ArchiveSink, ArchivedLetter, FilterParams, LetterFilter, LetterOutcome, LetterSummary,
    ReplayOptions, Scope, parse_archive,
};
use flowgate_core::{Flowgate, HostPorts};
use flowgate_embedded::DB_FILE;
use flowgate_settings::{Backend, Settings};

use crate::backend;
use crate::config::{DlqArgs, DlqCommand};
use crate::telemetry;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const SOME_FAILED: u8 = 1;

/// Runs a `dlq` command. Usage and configuration errors come back as `Err` (exit 2); a
/// failure part-way through an operation is exit 1.
pub async fn run(args: DlqArgs) -> Result<ExitCode> {
    let settings = args.settings.0;
    telemetry::init("warn", settings.log_format);
    let app = open(&settings).await?;
    let outcome = match args.command {
        DlqCommand::List { filter, json } => list(&app, checked(filter)?, json).await,
        DlqCommand::Show {
            request_id,
            tenant,
            json,
        } => show(&app, &request_id, tenant.as_deref(), json).await,
        DlqCommand::Replay { params, json } => {
            let options = ReplayOptions::scoped(&Scope::Operator, params)?;
            replay(&app, &options, json).await
        }
        DlqCommand::Archive { filter, max, out } => {
            let filter = checked(filter)?;
            let max = Scope::Operator.replay_max(max)?;
            let mut sink = JsonlFile::open(&out)?;
            archive(&app, &filter, max, &mut sink).await
        }
        DlqCommand::Restore { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let lines = parse_archive(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            restore(&app, &lines, &file).await
        }
    };
    outcome.or_else(|e| {
        eprintln!("flowgate dlq: {e}");
        Ok(ExitCode::from(SOME_FAILED))
    })
}

/// The use cases over the backend the settings name; the embedded one must already exist.
async fn open(settings: &Settings) -> Result<Flowgate> {
    if settings.backend == Backend::Embedded && !settings.data_dir.join(DB_FILE).exists() {
        return Err(format!(
            "no Flowgate data in {}: pass the --data-dir (or FLOWGATE_DATA_DIR) that \
             `flowgate serve` uses",
            settings.data_dir.display()
        )
        .into());
    }
    let (store, queue) = backend::open(settings).await?;
    Ok(Flowgate::build(
        settings,
        HostPorts {
            store,
            queue,
            schedules: None,
            backfills: None,
            dispatcher: None,
            metrics: None,
        },
    ))
}

fn checked(filter: FilterParams) -> Result<LetterFilter> {
    Ok(Scope::Operator.confine(LetterFilter::try_from(filter)?)?)
}

fn one_line(text: &str, width: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > width {
        format!("{}…", flat.chars().take(width - 1).collect::<String>())
    } else {
        flat
    }
}

fn age(seconds: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(seconds.max(0) as u64))
        .to_string()
        .split(' ')
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn list(app: &Flowgate, filter: LetterFilter, json: bool) -> Result<ExitCode> {
    let letters = app.dlq_scan(&filter).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&letters)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_rows(&letters);
    eprintln!("{} dead letter(s)", letters.len());
    Ok(ExitCode::SUCCESS)
}

fn print_rows(letters: &[LetterSummary]) {
    println!(
        "{:<36}  {:<16}  {:<12}  {:>8}  {:<10}  LAST ERROR",
        "REQUEST_ID", "WORKFLOW", "TENANT", "RECEIVES", "AGE"
    );
    for l in letters {
        println!(
            "{:<36}  {:<16}  {:<12}  {:>8}  {:<10}  {}",
            l.request_id.as_deref().unwrap_or("-"),
            one_line(l.workflow.as_deref().unwrap_or("-"), 16),
            one_line(l.tenant.as_deref().unwrap_or("-"), 12),
            l.receive_count,
            age(l.age_seconds),
            one_line(&format!("[{}] {}", l.error_kind.as_str(), l.error), 100),
        );
    }
}

async fn show(
    app: &Flowgate,
    request_id: &str,
    tenant: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let details = app.dlq_show(request_id, tenant).await?;
    if details.is_empty() {
        eprintln!(
            "no dead letter for request {request_id}{}; `flowgate status {request_id}` shows \
             the request itself",
            tenant
                .map(|t| format!(" of tenant {t}"))
                .unwrap_or_default()
        );
        return Ok(ExitCode::from(SOME_FAILED));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&details)?);
        return Ok(ExitCode::SUCCESS);
    }
    for d in &details {
        let s = &d.summary;
        println!("dead letter {}", s.message_id);
        println!(
            "  dead-lettered {} ({} ago) after {} deliveries",
            s.dead_lettered_at,
            age(s.age_seconds),
            s.receive_count
        );
        println!("  reason [{}]: {}", s.error_kind.as_str(), s.error);
        println!("message:\n{}", serde_json::to_string_pretty(&d.message)?);
        match &d.record {
            None => println!("request record: none (this letter can only be archived)"),
            Some(r) => {
                println!(
                    "request {} of tenant {}: {} (instance {}, {} failed deliveries)",
                    r.request_id,
                    r.tenant,
                    r.status.as_str(),
                    r.instance_id,
                    r.attempts
                );
                println!("history:");
                for h in &r.history {
                    println!(
                        "  {}  {:<15} {}",
                        h.at.to_rfc3339(),
                        h.kind.as_str(),
                        h.detail
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn bar(total: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{what} {{bar:40}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
    )) {
        bar.set_style(style);
    }
    bar
}

async fn replay(app: &Flowgate, options: &ReplayOptions, json: bool) -> Result<ExitCode> {
    // The bar's length costs a full read of the DLQ, so only a terminal pays for it.
    let bar = if std::io::stderr().is_terminal() {
        let expected = app.dlq_scan(&options.filter).await?.len();
        bar(
            options.max.map_or(expected, |m| m.min(expected)),
            "replaying",
        )
    } else {
        ProgressBar::hidden()
    };
    let progress = |o: &LetterOutcome| {
        bar.inc(1);
        if o.action == Action::Failed {
            bar.suspend(|| {
                eprintln!(
                    "failed: {} (letter {}): {}",
                    o.request_id.as_deref().unwrap_or("-"),
                    o.message_id,
                    o.detail
                )
            });
        }
    };
    let report = app.dlq_replay(options, &progress).await?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let prefix = if report.dry_run { "would be " } else { "" };
        for o in &report.letters {
            let action = serde_json::to_value(o.action)?;
            println!(
                "{prefix}{:<15} {:<36} {}",
                action.as_str().unwrap_or_default(),
                o.request_id.as_deref().unwrap_or("-"),
                o.detail
            );
        }
        if let Some(native) = &report.native_move {
            eprintln!("native bulk move: {native}");
        }
        eprintln!(
            "{}replayed {}, skipped (already created) {}, failed {}",
            if report.dry_run {
                "dry run: would have "
            } else {
                ""
            },
            report.replayed,
            report.skipped_created,
            report.failed
        );
    }
    Ok(if report.failed > 0 {
        ExitCode::from(SOME_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// An archive file: lines appended, then fsync'd, before `write` returns.
struct JsonlFile {
    file: File,
    path: PathBuf,
}

impl JsonlFile {
    fn open(path: &Path) -> Result<Self> {
        let fresh = !path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open {} for appending: {e}", path.display()))?;
        if fresh {
            // The new directory entry must be durable too, or a crash could lose the file.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            File::open(dir).and_then(|d| d.sync_all())?;
        }
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }
}

impl ArchiveSink for JsonlFile {
    fn write(&mut self, letters: &[ArchivedLetter]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for letter in letters {
            serde_json::to_writer(&mut buf, letter)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_all()
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

async fn archive(
    app: &Flowgate,
    filter: &LetterFilter,
    max: Option<usize>,
    sink: &mut JsonlFile,
) -> Result<ExitCode> {
    let report = app.dlq_archive(filter, max, sink).await?;
    for failure in &report.failed {
        eprintln!("failed: {failure}");
    }
    eprintln!(
        "archived {} to {} at {}, failed {}",
        report.archived,
        sink.path.display(),
        Utc::now().to_rfc3339(),
        report.failed.len()
    );
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(SOME_FAILED)
    })
}

async fn restore(app: &Flowgate, lines: &[ArchivedLetter], file: &Path) -> Result<ExitCode> {
    let report = app.dlq_restore(lines, &file.display().to_string()).await;
    for failure in &report.failed {
        eprintln!("failed: {failure}");
    }
    eprintln!(
        "restored {}, skipped (no longer archived) {}, failed {}",
        report.restored,
        report.skipped,
        report.failed.len()
    );
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(SOME_FAILED)
    })
}
