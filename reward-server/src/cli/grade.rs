//! The `grade` command: JSONL in, one result per item out, a summary on stderr.
//!
//! Input is read and graded in chunks of [`CHUNK`] lines, so memory stays
//! bounded on inputs of any size while every core is busy. Blank lines are
//! skipped; a line that is not a valid item still gets a result (verdict
//! `invalid`, with the line number in `error`), and the run goes on.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{io_err, CliError};
use crate::code::workers;
use crate::grade::{grade_batch, Input};
use crate::summary::{Summary, Tally};

/// Lines read and graded together.
pub const CHUNK: usize = 4096;

/// Options of `reward-server grade`.
#[derive(Debug, Clone, clap::Args)]
pub struct GradeArgs {
    /// JSONL file with one item per line, or `-` to read standard input.
    pub input: PathBuf,
    /// Where to write the results (JSONL, one per item, in input order) [default: standard output].
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
    /// Values of k for pass@k (comma-separated), computed over items grouped by `problem_id`.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "1")]
    pub k: Vec<u64>,
    /// Worker threads [default: one per core].
    #[arg(short = 'j', long, value_name = "N")]
    pub threads: Option<usize>,
    /// Never draw the progress bar (it is only drawn when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    /// Run code items on this process's threads instead of in one sandbox
    /// worker process per thread (which scales better over cores).
    #[arg(long)]
    pub in_process: bool,
}

/// Runs `grade` and returns its summary (already printed to stderr).
pub fn run_grade(args: &GradeArgs) -> Result<Summary, CliError> {
    if let Some(k) = args.k.iter().find(|&&k| k == 0) {
        return Err(CliError::Usage(format!("--k values must be at least 1, got {k}")));
    }
    if args.threads == Some(0) {
        return Err(CliError::Usage("--threads must be at least 1".into()));
    }
    let from_stdin = args.input.as_os_str() == "-";
    if let Some(out) = &args.output {
        if !from_stdin && same_file(&args.input, out) {
            return Err(CliError::Usage(format!(
                "--output {} is the input file; refusing to overwrite it",
                out.display()
            )));
        }
    }
    let (reader, total_bytes): (Box<dyn Read + Send>, Option<u64>) = if from_stdin {
        (Box::new(io::stdin()), None)
    } else {
        let f = File::open(&args.input).map_err(io_err("cannot read", &args.input))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(f), len)
    };
    let out_path = args.output.clone().unwrap_or_else(|| PathBuf::from("<stdout>"));
    let writer: Box<dyn Write + Send> = match &args.output {
        Some(p) => Box::new(File::create(p).map_err(io_err("cannot write", p))?),
        None => Box::new(io::stdout()),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start worker threads: {e}")))?;
    if !args.in_process {
        match std::env::current_exe() {
            Ok(exe) => workers::use_worker_processes(exe, Vec::new(), pool.current_num_threads()),
            Err(e) => {
                tracing::warn!("grading code items in this process: cannot find this program's binary: {e}")
            }
        }
    }
    let progress = progress_bar(total_bytes, args.no_progress);
    let started = Instant::now();
    let tally = pool.install(|| grade_stream(reader, writer, &progress, &args.input, &out_path));
    workers::stop_worker_processes();
    let tally = tally?;
    progress.finish_and_clear();
    let summary = tally.summary(&args.k);
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        items = summary.count,
        seconds = format_args!("{secs:.3}"),
        items_per_s = format_args!("{:.0}", summary.count as f64 / secs.max(1e-9)),
        threads = pool.current_num_threads(),
        "graded {}",
        args.input.display()
    );
    eprint!("{}", summary.render());
    if let Some(p) = &args.summary_json {
        let json = serde_json::to_string_pretty(&summary).expect("a summary always serialises");
        std::fs::write(p, json + "\n").map_err(io_err("cannot write", p))?;
    }
    Ok(summary)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn progress_bar(total_bytes: Option<u64>, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(total_bytes, ProgressDrawTarget::stderr());
    let template = if total_bytes.is_some() {
        "{spinner} {elapsed_precise} [{bar:40}] {bytes}/{total_bytes} ({eta} left) {msg}"
    } else {
        "{spinner} {elapsed_precise} {bytes} read {msg}"
    };
    pb.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb
}

/// Reads, grades and writes chunk by chunk.
fn grade_stream(
    reader: Box<dyn Read + Send>,
    writer: Box<dyn Write + Send>,
    progress: &ProgressBar,
    in_path: &Path,
    out_path: &Path,
) -> Result<Tally, CliError> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut out = BufWriter::with_capacity(1 << 20, writer);
    let mut tally = Tally::default();
    let mut line_no = 0usize;
    let mut buf = Vec::new();
    let mut chunk: Vec<Input> = Vec::with_capacity(CHUNK);
    let mut eof = false;
    while !eof {
        chunk.clear();
        while chunk.len() < CHUNK {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(io_err("cannot read", in_path))?;
            if n == 0 {
                eof = true;
                break;
            }
            line_no += 1;
            progress.inc(n as u64);
            let line = match std::str::from_utf8(&buf) {
                Ok(s) => s,
                Err(e) => {
                    chunk.push(Input::Malformed(crate::grade::Malformed {
                        id: None,
                        problem_id: None,
                        error: format!("line {line_no}: not valid UTF-8: {e}"),
                    }));
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            chunk.push(Input::from_line(line, line_no));
        }
        for r in grade_batch(&chunk) {
            tally.add(&r);
            serde_json::to_writer(&mut out, &r).map_err(|e| CliError::Io {
                what: "cannot write",
                path: out_path.display().to_string(),
                source: e.into(),
            })?;
            out.write_all(b"\n").map_err(io_err("cannot write", out_path))?;
        }
        progress.set_message(format!("{} items", tally.count()));
    }
    out.flush().map_err(io_err("cannot write", out_path))?;
    Ok(tally)
}
