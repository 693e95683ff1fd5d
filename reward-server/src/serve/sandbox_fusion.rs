//! SandboxFusion's `POST /run_code`, for Python: the wire types and the pure
//! mappings between them and our sandbox, so that a trainer written against
//! ByteDance's SandboxFusion (verl's `sandbox_fusion` reward and tool) can
//! point at `reward-server serve` unchanged.
//!
//! The shapes follow SandboxFusion field for field
//! (`bytedance/SandboxFusion`, `sandbox/server/sandbox_api.py` and
//! `sandbox/runners/types.py`): a request is `code`, `language`, `stdin`,
//! `run_timeout`, `compile_timeout`, `memory_limit_MB`, `files`,
//! `fetch_files`, `args`, unknown fields ignored, missing ones defaulted as
//! pydantic does there; an answer always carries all six fields (`status`,
//! `message`, `compile_result`, `run_result`, `executor_pod_name`, `files`),
//! nulls included, as FastAPI serialises its response model.
//!
//! SandboxFusion runs Python as `python file.py` with no compile step
//! (`sandbox/runners/major.py`, `run_python`), so `compile_result` is always
//! null for Python: a `SyntaxError` is a run that finished with return code 1,
//! and that is what [`response_for`] reports for our compile errors too.
//! `status` is `Success` when the run finished with return code 0, `Failed`
//! on a time limit or a non-zero return code, `SandboxError` when the sandbox
//! itself failed (`parse_run_status`).
//!
//! verl (`volcengine/verl`,
//! `verl/utils/reward_score/sandbox_fusion/utils.py`, `_process_single_case`)
//! reads only `status`, `compile_result` and `run_result`: `Success` with a
//! `Finished` run compares `stdout.rstrip("\n")` with the expected output
//! (pass or fail); `Failed` is a compile error (-4) when `compile_result`
//! failed, a timeout (-3) when `run_result.status` is `TimeLimitExceeded`, a
//! runtime error (-2) when it is `Error` or `Finished` with a non-zero
//! `return_code`; `SandboxError`, any other status and any HTTP error are
//! -1. Only a pass scores.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::code::{item_limits, MAX_MEMORY_LIMIT_MB, MAX_TIME_LIMIT_S};
use crate::sandbox::{Cancel, CaseEnd, CaseInput, CaseRun, CasesRun, Limits, Mode, Program, Sandbox};

/// The one `language` that runs here. SandboxFusion has no `python3`
/// (its `Language` literal rejects it with a 422); `pytest` and `python_gpu`
/// are other execution modes, not supported here.
pub(crate) const PYTHON: &str = "python";

/// Every `language` SandboxFusion accepts (`sandbox/runners/types.py`,
/// `Language`), in its order. Anything else is a 422 there.
pub(crate) const SANDBOX_FUSION_LANGUAGES: &[&str] = &[
    "python",
    "cpp",
    "nodejs",
    "go",
    "go_test",
    "java",
    "php",
    "csharp",
    "bash",
    "typescript",
    "sql",
    "rust",
    "cuda",
    "lua",
    "R",
    "perl",
    "D_ut",
    "ruby",
    "scala",
    "julia",
    "pytest",
    "junit",
    "kotlin_script",
    "jest",
    "verilog",
    "python_gpu",
    "lean",
    "swift",
    "racket",
];

/// SandboxFusion's default `run_timeout` and `compile_timeout`, in seconds.
pub(crate) const DEFAULT_TIMEOUT_S: f64 = 10.0;

/// SandboxFusion's default `memory_limit_MB`: no limit (any value ≤ 0 means
/// none there).
pub(crate) const NO_MEMORY_LIMIT: i64 = -1;

/// `return_code` of a CPython process that ended with an uncaught exception,
/// a `SyntaxError` at start-up or a `MemoryError` (what SandboxFusion's
/// `RLIMIT_AS` memory limit gives in Python).
const EXCEPTION_STATUS: i32 = 1;

/// `return_code` for a program we stopped for its output: asyncio reports a
/// process killed by SIGKILL as -9, as SandboxFusion returns it.
const KILLED_STATUS: i32 = -9;

/// `return_code` for a wasm trap, the counterpart of a native crash
/// (SIGSEGV, -11 as asyncio reports it).
const CRASHED_STATUS: i32 = -11;

/// A `POST /run_code` request (SandboxFusion's `RunCodeRequest`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct RunCodeRequest {
    /// Seconds allowed to compile. Python has no compile step: accepted and
    /// ignored.
    #[serde(default = "default_timeout", deserialize_with = "lax_f64")]
    #[schema(default = 10.0)]
    pub(crate) compile_timeout: f64,
    /// Seconds the program may run: wall clock in SandboxFusion, our CPU
    /// budget (fuel, at reference-machine speed) here. In (0, 60].
    #[serde(default = "default_timeout", deserialize_with = "lax_f64")]
    #[schema(default = 10.0)]
    pub(crate) run_timeout: f64,
    /// Memory limit in MB; -1 (any value ≤ 0): none, which here means our
    /// default of 1024 MiB. Values over 4096 are 4096, all a wasm32 guest
    /// can address.
    #[serde(
        rename = "memory_limit_MB",
        default = "no_memory_limit",
        deserialize_with = "lax_i64"
    )]
    #[schema(default = json!(-1))]
    pub(crate) memory_limit_mb: i64,
    /// The program.
    pub(crate) code: String,
    /// Standard input; null or absent: none (the program reads EOF).
    #[serde(default)]
    pub(crate) stdin: Option<String>,
    /// The language or execution mode; only `python` runs here.
    pub(crate) language: String,
    /// Files to put next to the program, path to base64 content (null values
    /// are skipped). Not supported here: see [`check_files`].
    #[serde(default)]
    pub(crate) files: BTreeMap<String, Option<String>>,
    /// Paths (relative to the program's directory) to return, base64, in the
    /// answer's `files` after the run. The program can write no file here,
    /// so none is ever found (SandboxFusion leaves missing files out).
    #[serde(default)]
    pub(crate) fetch_files: Vec<String>,
    /// Extra arguments for `pytest`; ignored for `python`, as in SandboxFusion.
    #[serde(default)]
    pub(crate) args: Vec<String>,
}

fn default_timeout() -> f64 {
    DEFAULT_TIMEOUT_S
}

fn no_memory_limit() -> i64 {
    NO_MEMORY_LIMIT
}

/// A JSON number, or a string holding one: pydantic's lax mode accepts both
/// for a `float` field (verl's tool passes a model-chosen `timeout` through).
fn lax_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lax {
        Number(f64),
        Text(String),
    }
    match Lax::deserialize(deserializer)? {
        Lax::Number(x) => Ok(x),
        Lax::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("{text:?} is not a number"))),
    }
}

/// An integer, a float with no fractional part, or a string holding an
/// integer: what pydantic's lax mode accepts for an `int` field.
fn lax_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lax {
        Int(i64),
        Float(f64),
        Text(String),
    }
    match Lax::deserialize(deserializer)? {
        Lax::Int(n) => Ok(n),
        Lax::Float(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Ok(x as i64),
        Lax::Float(x) => Err(D::Error::custom(format!("{x} is not an integer"))),
        Lax::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("{text:?} is not an integer"))),
    }
}

/// The answer's `status` (SandboxFusion's `RunStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) enum RunStatus {
    /// Every step finished with return code 0.
    Success,
    /// A step ran past its time limit or ended with a non-zero return code.
    Failed,
    /// The sandbox itself failed; `message` says how.
    SandboxError,
}

/// How one step (compile or run) ended (SandboxFusion's `CommandRunStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) enum CommandRunStatus {
    /// The process ended by itself (any return code) or was killed.
    Finished,
    /// The sandbox could not run the step.
    Error,
    /// The step ran past its time limit; there is no return code.
    TimeLimitExceeded,
}

/// One step's result (SandboxFusion's `CommandRunResult`). Every field is
/// serialised, null or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct CommandRunResult {
    /// How the step ended.
    pub(crate) status: CommandRunStatus,
    /// Wall-clock seconds the step took.
    pub(crate) execution_time: Option<f64>,
    /// The process's exit status (negative: killed by that signal); null
    /// after a time limit or a sandbox error.
    pub(crate) return_code: Option<i32>,
    /// Standard output, as text.
    pub(crate) stdout: Option<String>,
    /// Standard error, as text (tracebacks included).
    pub(crate) stderr: Option<String>,
}

/// A `POST /run_code` answer (SandboxFusion's `RunCodeResponse`). Every field
/// is serialised, null or not; it goes out with HTTP 200 whatever `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct RunCodeResponse {
    /// The overall outcome.
    pub(crate) status: RunStatus,
    /// Empty unless `status` is `SandboxError`.
    pub(crate) message: String,
    /// Always null for Python (no compile step).
    pub(crate) compile_result: Option<CommandRunResult>,
    /// The run; null when the sandbox failed before running anything.
    pub(crate) run_result: Option<CommandRunResult>,
    /// The serving pod's name in SandboxFusion deployments; always null here.
    pub(crate) executor_pod_name: Option<String>,
    /// The fetched files, path to base64 content; always empty here.
    pub(crate) files: BTreeMap<String, String>,
}

/// FastAPI's 422 body, which SandboxFusion sends for a request that fails
/// validation (here: a `language` outside [`SANDBOX_FUSION_LANGUAGES`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct ValidationError {
    /// One entry per invalid field.
    pub(crate) detail: Vec<ValidationErrorDetail>,
}

/// One invalid field, as pydantic 2 describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct ValidationErrorDetail {
    /// The error kind (`literal_error`).
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// Where: `["body", "language"]`.
    pub(crate) loc: Vec<String>,
    /// What was expected.
    pub(crate) msg: String,
    /// The value given.
    pub(crate) input: String,
    /// Details (`expected`).
    pub(crate) ctx: BTreeMap<String, String>,
}

/// True for the language that runs here ([`PYTHON`]).
pub(crate) fn is_python(language: &str) -> bool {
    language == PYTHON
}

/// True for a language SandboxFusion knows (whether or not it runs here).
pub(crate) fn is_sandbox_fusion_language(language: &str) -> bool {
    SANDBOX_FUSION_LANGUAGES.contains(&language)
}

/// The 422 body SandboxFusion (FastAPI, pydantic 2) sends for a `language`
/// it does not know, such as `python3`: send it with status 422.
pub(crate) fn language_error(language: &str) -> ValidationError {
    let quoted: Vec<String> = SANDBOX_FUSION_LANGUAGES
        .iter()
        .map(|l| format!("'{l}'"))
        .collect();
    let (last, rest) = quoted.split_last().expect("the language list is not empty");
    let expected = format!("{} or {last}", rest.join(", "));
    ValidationError {
        detail: vec![ValidationErrorDetail {
            kind: "literal_error".into(),
            loc: vec!["body".into(), "language".into()],
            msg: format!("Input should be {expected}"),
            input: language.into(),
            ctx: BTreeMap::from([("expected".to_string(), expected)]),
        }],
    }
}

/// The answer for a language SandboxFusion knows but this server does not
/// run (`cpp`, `pytest`, ...): a `SandboxError`, as SandboxFusion answers
/// when it cannot run a request, which verl scores as -1 (not the model's
/// fault). HTTP 200.
pub(crate) fn unsupported_language(language: &str) -> RunCodeResponse {
    sandbox_error(format!(
        "language {language:?} is not supported: this server runs only {PYTHON:?}"
    ))
}

/// A `SandboxError` answer with `message`: the shape SandboxFusion gives when
/// running the request raised (no compile or run result, no files). For
/// requests this server cannot honour ([`limits_for`], [`check_files`]) and
/// for sandbox failures. HTTP 200.
pub(crate) fn sandbox_error(message: impl Into<String>) -> RunCodeResponse {
    RunCodeResponse {
        status: RunStatus::SandboxError,
        message: message.into(),
        compile_result: None,
        run_result: None,
        executor_pod_name: None,
        files: BTreeMap::new(),
    }
}

/// Refuses a request that puts files next to the program: our guest sees no
/// host file system. Entries SandboxFusion skips (a null value, or a name
/// containing `IGNORE_THIS_FILE`) are fine; verl always sends `{}`.
pub(crate) fn check_files(req: &RunCodeRequest) -> Result<(), String> {
    let given: Vec<&str> = req
        .files
        .iter()
        .filter(|(name, content)| content.is_some() && !name.contains("IGNORE_THIS_FILE"))
        .map(|(name, _)| name.as_str())
        .collect();
    if given.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "`files` is not supported: the sandbox has no file system for the program (given: {})",
            given.join(", ")
        ))
    }
}

/// The limits for a request: `run_timeout` seconds of CPU budget (counted in
/// fuel, as for grading, with the usual wall-clock backstop) and
/// `memory_limit_MB` MiB of memory (≤ 0, SandboxFusion's "no limit": our
/// default 1024 MiB; over 4096: 4096, the most a wasm32 guest can address).
/// `compile_timeout` does not matter for Python. An `Err` names the field:
/// `run_timeout` must be in (0, 60].
pub(crate) fn limits_for(req: &RunCodeRequest) -> Result<Limits, String> {
    let time = req.run_timeout;
    if !(time.is_finite() && time > 0.0 && time <= MAX_TIME_LIMIT_S) {
        return Err(format!(
            "`run_timeout` must be in (0, {MAX_TIME_LIMIT_S}] seconds, got {time}"
        ));
    }
    let memory_mb = match u64::try_from(req.memory_limit_mb) {
        Ok(0) | Err(_) => None,
        Ok(mb) => Some(mb.min(MAX_MEMORY_LIMIT_MB)),
    };
    item_limits(Some(time), memory_mb).map_err(|e| {
        e.replace("`time_limit_s`", "`run_timeout`")
            .replace("`memory_limit_mb`", "`memory_limit_MB`")
    })
}

/// The program and its one case: the code run as a script, with `stdin`
/// (none: empty) as its standard input.
pub(crate) fn program_for(code: &str, stdin: Option<&str>) -> (Program, Vec<CaseInput>) {
    let program = Program {
        source: code.to_string(),
        mode: Mode::Stdio,
    };
    let stdin = stdin
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .unwrap_or_default();
    (program, vec![CaseInput { stdin, args: None }])
}

/// Runs `code` as a script with `stdin` under `limits` in `sandbox` and
/// answers as SandboxFusion would ([`response_for`]); what a sandbox worker
/// process does for `/run_code`.
pub(crate) fn run_as_sandbox_fusion(
    sandbox: &Sandbox,
    code: &str,
    stdin: Option<&str>,
    limits: &Limits,
    cancel: &Cancel,
) -> RunCodeResponse {
    let (program, cases) = program_for(code, stdin);
    match sandbox.run_cases_until(program, cases, limits, std::sync::Arc::new(|_, _| true), cancel) {
        Ok(run) if run.cancelled => sandbox_error("the run was cancelled"),
        Ok(run) => response_for(&run, limits),
        Err(e) => sandbox_error(e.to_string()),
    }
}

/// The answer for a run of [`program_for`]'s program under `limits`, as
/// SandboxFusion would give it for the same program run natively:
///
/// | our end | `status` | `run_result` |
/// |---|---|---|
/// | finished (exit status 0) | `Success` | `Finished`, return code 0 |
/// | `sys.exit(n)` | `Failed` (`Success` when `n & 0xFF` is 0) | `Finished`, return code `n & 0xFF` |
/// | uncaught exception | `Failed` | `Finished`, return code 1, traceback on stderr |
/// | compile error (`SyntaxError`) | `Failed` | `Finished`, return code 1, the error on stderr; `compile_result` null |
/// | time limit | `Failed` | `TimeLimitExceeded`, no return code, the output so far |
/// | memory limit | `Failed` | `Finished`, return code 1, `MemoryError` on stderr |
/// | output limit | `Failed` | `Finished`, return code -9 (killed), a note on stderr |
/// | wasm trap or other crash | `Failed` | `Finished`, return code -11, the reason on stderr |
/// | the program broke the harness protocol (called the sandbox's door) | `Failed` | `Finished`, return code -9 (killed), the reason on stderr |
/// | no case ran, or not a script's end | `SandboxError` | null |
///
/// verl scores these as a pass or fail (by stdout), -3 for the time limit
/// and -2 for all the other failures, like SandboxFusion's. `execution_time`
/// is the run's wall time, start-up included. Output that is not UTF-8 is
/// decoded lossily (SandboxFusion replaces the whole stream with a
/// `[DecodeError]` note).
pub(crate) fn response_for(run: &CasesRun, limits: &Limits) -> RunCodeResponse {
    let seconds = Some(run.elapsed.as_secs_f64());
    if let Some(error) = &run.compile_error {
        return run_response(CommandRunResult {
            status: CommandRunStatus::Finished,
            execution_time: seconds,
            return_code: Some(EXCEPTION_STATUS),
            stdout: Some(String::new()),
            stderr: Some(format!("{}: {}\n", error.kind, error.message)),
        });
    }
    let Some(case) = run.cases.first().and_then(Option::as_ref) else {
        return sandbox_error("the sandbox ran no case");
    };
    let finished = |return_code: i32, note: Option<String>| CommandRunResult {
        status: CommandRunStatus::Finished,
        execution_time: seconds,
        return_code: Some(return_code),
        stdout: Some(text(&case.stdout)),
        stderr: Some(with_note(case, note)),
    };
    let result = match &case.end {
        CaseEnd::Finished => finished(0, None),
        CaseEnd::Exited(status) => finished(status & 0xFF, None),
        CaseEnd::Raised { .. } => finished(EXCEPTION_STATUS, None),
        CaseEnd::TimeLimit => CommandRunResult {
            status: CommandRunStatus::TimeLimitExceeded,
            execution_time: seconds,
            return_code: None,
            stdout: Some(text(&case.stdout)),
            stderr: Some(text(&case.stderr)),
        },
        CaseEnd::MemoryLimit => finished(
            EXCEPTION_STATUS,
            Some(format!(
                "MemoryError: over the memory limit of {} MiB",
                limits.memory_bytes >> 20
            )),
        ),
        CaseEnd::OutputLimit => finished(
            KILLED_STATUS,
            Some(format!(
                "killed: stdout and stderr went over {} bytes",
                limits.output_bytes
            )),
        ),
        CaseEnd::Crashed(why) => finished(CRASHED_STATUS, Some(format!("crashed: {why}"))),
        CaseEnd::Broke(why) => finished(KILLED_STATUS, Some(broke(why))),
        CaseEnd::Returned(_)
        | CaseEnd::Unserialisable(_)
        | CaseEnd::TestsPassed
        | CaseEnd::Rejected { .. } => {
            return sandbox_error("the sandbox ran the program as a function, not as a script");
        }
    };
    // A frame forged after the case ended (by a finalizer) still fails it.
    if let (Some(why), CommandRunStatus::Finished, Some(0)) = (&run.broke, result.status, result.return_code)
    {
        return run_response(finished(KILLED_STATUS, Some(broke(why))));
    }
    run_response(result)
}

/// The note for a program that broke the harness protocol.
fn broke(why: &str) -> String {
    format!("killed: the program broke the harness protocol (it called the sandbox's door itself): {why}")
}

/// An answer with a run result and the status SandboxFusion's
/// `parse_run_status` derives from it.
fn run_response(result: CommandRunResult) -> RunCodeResponse {
    let status = match (result.status, result.return_code) {
        (CommandRunStatus::Error, _) => RunStatus::SandboxError,
        (CommandRunStatus::Finished, Some(0)) => RunStatus::Success,
        _ => RunStatus::Failed,
    };
    RunCodeResponse {
        status,
        message: String::new(),
        compile_result: None,
        run_result: Some(result),
        executor_pod_name: None,
        files: BTreeMap::new(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The case's stderr, with `note` as a last line.
fn with_note(case: &CaseRun, note: Option<String>) -> String {
    let mut stderr = text(&case.stderr);
    if let Some(note) = note {
        if !stderr.is_empty() && !stderr.ends_with('\n') {
            stderr.push('\n');
        }
        stderr.push_str(&note);
        stderr.push('\n');
    }
    stderr
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sandbox::limits::fuel_for;
    use crate::sandbox::CompileError;
    use serde_json::{json, Value};

    /// The body verl's `call_sandbox_api` posts
    /// (`verl/utils/reward_score/sandbox_fusion/utils.py`), key for key.
    const VERL_REQUEST: &str = r#"{"compile_timeout": 10, "run_timeout": 10, "code": "print(input())", "stdin": "1 2\n", "memory_limit_MB": 1024, "language": "python", "files": {}, "fetch_files": []}"#;

    /// How verl's `_process_single_case` scores an answer: `Ok(passed)` for
    /// a `Success` with a `Finished` run (stdout compared after
    /// `rstrip("\n")`), else its error code.
    fn verl_score(answer: &Value, expected: &str) -> Result<bool, i32> {
        let compile = answer.get("compile_result").filter(|v| !v.is_null());
        let run = answer.get("run_result").filter(|v| !v.is_null());
        let run_status = run.and_then(|r| r["status"].as_str());
        match answer["status"].as_str() {
            Some("SandboxError") => Err(-1),
            Some("Failed") => {
                if let Some(c) = compile {
                    let status = c["status"].as_str();
                    if matches!(status, Some("Error" | "TimeLimitExceeded"))
                        || (status == Some("Finished") && c["return_code"] != json!(0))
                    {
                        return Err(-4);
                    }
                }
                match (run, run_status) {
                    (Some(_), Some("TimeLimitExceeded")) => Err(-3),
                    (Some(_), Some("Error")) => Err(-2),
                    (Some(r), Some("Finished")) if r["return_code"] != json!(0) => Err(-2),
                    _ => Err(-1),
                }
            }
            Some("Success") if run_status == Some("Finished") => {
                let stdout = run.and_then(|r| r["stdout"].as_str()).unwrap_or("");
                Ok(stdout.trim_end_matches('\n') == expected.trim_end_matches('\n'))
            }
            _ => Err(-1),
        }
    }

    fn request(json: &str) -> RunCodeRequest {
        serde_json::from_str(json).expect("a valid request")
    }

    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    fn one_case(end: CaseEnd, stdout: &str, stderr: &str) -> CasesRun {
        CasesRun {
            compile_error: None,
            cases: vec![Some(CaseRun {
                end,
                stdout: stdout.as_bytes().to_vec(),
                stderr: stderr.as_bytes().to_vec(),
                fuel_used: 1,
                step: None,
            })],
            broke: None,
            instances: 1,
            elapsed: Duration::from_millis(25),
            cancelled: false,
        }
    }

    fn answer(run: &CasesRun) -> Value {
        serde_json::to_value(response_for(run, &Limits::default())).expect("serialisable")
    }

    #[test]
    fn a_request_as_verl_sends_it_parses() {
        let req = request(VERL_REQUEST);
        assert_eq!(req.code, "print(input())");
        assert_eq!(req.language, "python");
        assert_eq!(req.stdin.as_deref(), Some("1 2\n"));
        assert_eq!((req.compile_timeout, req.run_timeout), (10.0, 10.0));
        assert_eq!(req.memory_limit_mb, 1024);
        assert!(req.files.is_empty() && req.fetch_files.is_empty() && req.args.is_empty());
        assert_eq!(check_files(&req), Ok(()));
        // verl's tool sends `str(None)` as stdin and may pass a model-chosen
        // timeout as a string; pydantic's lax mode takes both.
        let tool = request(
            r#"{"compile_timeout": "30", "run_timeout": "30", "code": "x", "stdin": "None",
                "memory_limit_MB": 1024.0, "language": "python", "files": {}, "fetch_files": []}"#,
        );
        assert_eq!((tool.run_timeout, tool.memory_limit_mb), (30.0, 1024));
    }

    #[test]
    fn missing_fields_take_sandbox_fusion_defaults_and_unknown_ones_are_ignored() {
        // verl before its memory limit (June 2025) sent no `memory_limit_MB`.
        let req = request(r#"{"code": "pass", "language": "python", "request_id": 7, "extra": {"a": 1}}"#);
        assert_eq!(req.compile_timeout, DEFAULT_TIMEOUT_S);
        assert_eq!(req.run_timeout, DEFAULT_TIMEOUT_S);
        assert_eq!(req.memory_limit_mb, NO_MEMORY_LIMIT);
        assert_eq!(req.stdin, None);
        assert!(req.files.is_empty() && req.fetch_files.is_empty() && req.args.is_empty());
        assert_eq!(
            request(r#"{"code": "", "language": "python", "stdin": null}"#).stdin,
            None
        );
        for bad in [
            r#"{"language": "python"}"#,
            r#"{"code": "pass"}"#,
            r#"{"code": null, "language": "python"}"#,
            r#"{"code": "pass", "language": "python", "run_timeout": "soon"}"#,
            r#"{"code": "pass", "language": "python", "memory_limit_MB": 1.5}"#,
        ] {
            assert!(serde_json::from_str::<RunCodeRequest>(bad).is_err(), "{bad}");
        }
        let serialised = serde_json::to_value(request(VERL_REQUEST)).expect("serialisable");
        assert_eq!(serialised["memory_limit_MB"], json!(1024));
    }

    #[test]
    fn an_answer_carries_every_field_verl_reads_nulls_included() {
        let value = answer(&one_case(CaseEnd::Finished, "3\n", ""));
        assert_eq!(
            keys(&value),
            [
                "compile_result",
                "executor_pod_name",
                "files",
                "message",
                "run_result",
                "status"
            ]
        );
        assert_eq!(value["status"], "Success");
        assert_eq!(value["message"], "");
        assert_eq!(value["compile_result"], Value::Null);
        assert_eq!(value["executor_pod_name"], Value::Null);
        assert_eq!(value["files"], json!({}));
        let run = &value["run_result"];
        assert_eq!(
            keys(run),
            ["execution_time", "return_code", "status", "stderr", "stdout"]
        );
        assert_eq!(run["status"], "Finished");
        assert_eq!(run["return_code"], 0);
        assert_eq!(run["stdout"], "3\n");
        assert_eq!(run["stderr"], "");
        assert_eq!(run["execution_time"], json!(0.025));

        let timeout = answer(&one_case(CaseEnd::TimeLimit, "partial\n", ""));
        assert_eq!(keys(&timeout["run_result"]).len(), 5);
        assert_eq!(timeout["run_result"]["return_code"], Value::Null);

        let error = serde_json::to_value(sandbox_error("down")).expect("serialisable");
        assert_eq!(
            error,
            json!({"status": "SandboxError", "message": "down", "compile_result": null,
                   "run_result": null, "executor_pod_name": null, "files": {}})
        );
        let back: RunCodeResponse = serde_json::from_value(value).expect("round trip");
        assert_eq!(
            back,
            response_for(&one_case(CaseEnd::Finished, "3\n", ""), &Limits::default())
        );
    }

    #[test]
    fn each_way_a_run_ends_maps_to_what_verl_expects() {
        let raised = CaseEnd::Raised {
            kind: "ValueError".into(),
            message: "bad".into(),
            in_tests: false,
        };
        let cases = [
            (CaseEnd::Finished, "Success", "Finished", Some(0), Ok(true)),
            (CaseEnd::Exited(3), "Failed", "Finished", Some(3), Err(-2)),
            (CaseEnd::Exited(256), "Success", "Finished", Some(0), Ok(true)),
            (CaseEnd::Exited(-1), "Failed", "Finished", Some(255), Err(-2)),
            (raised, "Failed", "Finished", Some(1), Err(-2)),
            (CaseEnd::TimeLimit, "Failed", "TimeLimitExceeded", None, Err(-3)),
            (CaseEnd::MemoryLimit, "Failed", "Finished", Some(1), Err(-2)),
            (CaseEnd::OutputLimit, "Failed", "Finished", Some(-9), Err(-2)),
            (
                CaseEnd::Broke("a forged frame".into()),
                "Failed",
                "Finished",
                Some(-9),
                Err(-2),
            ),
            (
                CaseEnd::Crashed("wasm trap: call stack exhausted".into()),
                "Failed",
                "Finished",
                Some(-11),
                Err(-2),
            ),
        ];
        for (end, status, run_status, return_code, verl) in cases {
            let value = answer(&one_case(end.clone(), "42\n", "trace\n"));
            assert_eq!(value["status"], status, "{end:?}");
            assert_eq!(value["message"], "", "{end:?}");
            assert_eq!(value["compile_result"], Value::Null, "{end:?}");
            assert_eq!(value["run_result"]["status"], run_status, "{end:?}");
            assert_eq!(value["run_result"]["return_code"], json!(return_code), "{end:?}");
            assert_eq!(value["run_result"]["stdout"], "42\n", "{end:?}");
            assert!(value["run_result"]["stderr"]
                .as_str()
                .is_some_and(|s| s.starts_with("trace\n")));
            assert_eq!(verl_score(&value, "42"), verl, "{end:?}");
        }
        // A pass needs the right output too.
        assert_eq!(
            verl_score(&answer(&one_case(CaseEnd::Finished, "41\n", "")), "42"),
            Ok(false)
        );
    }

    #[test]
    fn limits_and_crashes_say_why_on_stderr() {
        let stderr = |end| answer(&one_case(end, "", "partial"))["run_result"]["stderr"].clone();
        assert_eq!(
            stderr(CaseEnd::MemoryLimit),
            "partial\nMemoryError: over the memory limit of 1024 MiB\n"
        );
        assert_eq!(
            stderr(CaseEnd::OutputLimit),
            format!(
                "partial\nkilled: stdout and stderr went over {} bytes\n",
                64 << 20
            )
        );
        assert_eq!(
            stderr(CaseEnd::Crashed("wasm trap: x".into())),
            "partial\ncrashed: wasm trap: x\n"
        );
        assert_eq!(stderr(CaseEnd::TimeLimit), "partial");
    }

    #[test]
    fn a_syntax_error_is_a_failed_run_as_in_sandbox_fusion() {
        // SandboxFusion runs `python file.py`: a SyntaxError exits 1 with
        // the error on stderr and no compile result (verl issue #4074 shows
        // such an answer); verl scores it -2.
        let run = CasesRun {
            compile_error: Some(CompileError {
                kind: "SyntaxError".into(),
                message: "'(' was never closed (<solution>, line 1)".into(),
            }),
            cases: vec![None],
            broke: None,
            instances: 1,
            elapsed: Duration::from_millis(5),
            cancelled: false,
        };
        let value = answer(&run);
        assert_eq!(value["status"], "Failed");
        assert_eq!(value["compile_result"], Value::Null);
        assert_eq!(value["run_result"]["status"], "Finished");
        assert_eq!(value["run_result"]["return_code"], 1);
        assert_eq!(value["run_result"]["stdout"], "");
        assert_eq!(
            value["run_result"]["stderr"],
            "SyntaxError: '(' was never closed (<solution>, line 1)\n"
        );
        assert_eq!(verl_score(&value, ""), Err(-2));
    }

    #[test]
    fn a_run_with_no_case_is_a_sandbox_error() {
        let run = CasesRun {
            compile_error: None,
            cases: vec![None],
            broke: None,
            instances: 0,
            elapsed: Duration::ZERO,
            cancelled: false,
        };
        let value = answer(&run);
        assert_eq!(value["status"], "SandboxError");
        assert_eq!(value["run_result"], Value::Null);
        assert_eq!(verl_score(&value, ""), Err(-1));
        let returned = answer(&one_case(CaseEnd::Returned("1".into()), "", ""));
        assert_eq!(returned["status"], "SandboxError");
    }

    #[test]
    fn output_that_is_not_utf8_is_decoded_lossily() {
        let mut run = one_case(CaseEnd::Finished, "", "");
        if let Some(case) = run.cases[0].as_mut() {
            case.stdout = b"ok \xff\n".to_vec();
        }
        assert_eq!(answer(&run)["run_result"]["stdout"], "ok \u{fffd}\n");
    }

    #[test]
    fn limits_follow_run_timeout_and_memory_limit() {
        let base = request(r#"{"code": "", "language": "python"}"#);
        let with = |run_timeout: f64, memory_limit_mb: i64| RunCodeRequest {
            run_timeout,
            memory_limit_mb,
            ..base.clone()
        };
        // SandboxFusion's defaults: 10 s, no memory limit (our 1024 MiB).
        let limits = limits_for(&base).expect("the defaults are valid");
        assert_eq!(limits.fuel, fuel_for(Duration::from_secs(10)));
        assert_eq!(limits.memory_bytes, 1024 << 20);
        assert_eq!(limits, Limits::with_time(Duration::from_secs(10)));

        let limits = limits_for(&with(2.5, 256)).expect("valid");
        assert_eq!(limits.fuel, fuel_for(Duration::from_millis(2500)));
        assert_eq!(limits.memory_bytes, 256 << 20);
        assert_eq!(
            limits_for(&with(60.0, 0)).expect("valid").memory_bytes,
            1024 << 20
        );
        assert_eq!(
            limits_for(&with(1.0, -7)).expect("valid").memory_bytes,
            1024 << 20
        );
        assert_eq!(
            limits_for(&with(1.0, 1 << 20)).expect("valid").memory_bytes,
            4096 << 20
        );
        // The compile timeout does not matter for Python.
        let compile = RunCodeRequest {
            compile_timeout: -1.0,
            ..base.clone()
        };
        assert!(limits_for(&compile).is_ok());

        for bad in [0.0, -1.0, 60.5, f64::NAN, f64::INFINITY] {
            let error = limits_for(&with(bad, 1024)).expect_err("out of range");
            assert!(error.contains("`run_timeout`"), "{error}");
        }
    }

    #[test]
    fn files_for_the_program_are_refused_unless_sandbox_fusion_skips_them() {
        let mut req = request(VERL_REQUEST);
        req.files.insert("skipped.txt".into(), None);
        req.files
            .insert("IGNORE_THIS_FILE.bin".into(), Some("AA==".into()));
        assert_eq!(check_files(&req), Ok(()));
        req.files.insert("data/input.txt".into(), Some("aGk=".into()));
        let error = check_files(&req).expect_err("a real file");
        assert!(
            error.contains("data/input.txt") && error.contains("`files`"),
            "{error}"
        );
        // fetch_files needs no check: the answer's `files` is always empty.
        req.fetch_files.push("out.txt".into());
        assert!(
            response_for(&one_case(CaseEnd::Finished, "", ""), &Limits::default())
                .files
                .is_empty()
        );
    }

    #[test]
    fn the_program_runs_as_a_script_with_its_stdin() {
        let req = request(VERL_REQUEST);
        let (program, cases) = program_for(&req.code, req.stdin.as_deref());
        assert_eq!(program.source, "print(input())");
        assert_eq!(program.mode, Mode::Stdio);
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].stdin, Bytes::from_static(b"1 2\n"));
        assert_eq!(cases[0].args, None);
        let req = request(r#"{"code": "", "language": "python"}"#);
        let (_, cases) = program_for(&req.code, req.stdin.as_deref());
        assert!(cases[0].stdin.is_empty());
    }

    #[test]
    fn languages_follow_sandbox_fusion_naming() {
        assert!(is_python("python"));
        for other in ["python3", "Python", "py", "pytest", "python_gpu", ""] {
            assert!(!is_python(other), "{other}");
        }
        assert_eq!(SANDBOX_FUSION_LANGUAGES.len(), 29);
        assert!(is_sandbox_fusion_language("cpp") && is_sandbox_fusion_language("R"));
        assert!(!is_sandbox_fusion_language("python3") && !is_sandbox_fusion_language("r"));

        let value = serde_json::to_value(unsupported_language("cpp")).expect("serialisable");
        assert_eq!(value["status"], "SandboxError");
        assert_eq!(
            value["message"],
            r#"language "cpp" is not supported: this server runs only "python""#
        );
        assert_eq!(value["compile_result"], Value::Null);
        assert_eq!(value["run_result"], Value::Null);
        assert_eq!(value["files"], json!({}));
        assert_eq!(verl_score(&value, ""), Err(-1));

        let body = serde_json::to_value(language_error("python3")).expect("serialisable");
        let detail = &body["detail"][0];
        assert_eq!(keys(detail), ["ctx", "input", "loc", "msg", "type"]);
        assert_eq!(detail["type"], "literal_error");
        assert_eq!(detail["loc"], json!(["body", "language"]));
        assert_eq!(detail["input"], "python3");
        let msg = detail["msg"].as_str().expect("a message");
        assert!(
            msg.starts_with("Input should be 'python', 'cpp', 'nodejs', "),
            "{msg}"
        );
        assert!(msg.ends_with("'swift' or 'racket'"), "{msg}");
        assert_eq!(
            detail["ctx"]["expected"],
            msg.trim_start_matches("Input should be ")
        );
    }

    /// Real programs through the sandbox and this module, scored as verl
    /// scores them. Skipped when the guest is not fetched.
    #[test]
    fn real_runs_score_as_in_sandbox_fusion() {
        let Some(sandbox) = crate::sandbox::test_sandbox() else {
            return;
        };
        let run = |code: &str, stdin: &str, run_timeout: f64| -> Value {
            let req = RunCodeRequest {
                code: code.into(),
                stdin: Some(stdin.into()),
                run_timeout,
                memory_limit_mb: 256,
                ..request(VERL_REQUEST)
            };
            let limits = limits_for(&req).expect("valid limits");
            let answer =
                run_as_sandbox_fusion(sandbox, &req.code, req.stdin.as_deref(), &limits, &Cancel::new());
            serde_json::to_value(answer).expect("serialisable")
        };
        let sum = "a, b = map(int, input().split())\nprint(a + b)\n";
        assert_eq!(verl_score(&run(sum, "1 2\n", 2.0), "3"), Ok(true));
        assert_eq!(verl_score(&run(sum, "1 3\n", 2.0), "3"), Ok(false));
        let raised = run("raise ValueError('no')\n", "", 2.0);
        assert_eq!(verl_score(&raised, ""), Err(-2));
        assert!(raised["run_result"]["stderr"]
            .as_str()
            .is_some_and(|s| s.contains("ValueError: no")));
        assert_eq!(verl_score(&run("print('a'\n", "", 2.0), ""), Err(-2));
        assert_eq!(
            verl_score(&run("import sys\nsys.exit(2)\n", "", 2.0), ""),
            Err(-2)
        );
        let slow = run("print('so far', flush=True)\nwhile True: pass\n", "", 0.2);
        assert_eq!(verl_score(&slow, ""), Err(-3));
        assert_eq!(slow["run_result"]["stdout"], "so far\n");
        let big = run("x = bytearray(512 << 20)\n", "", 2.0);
        assert_eq!(verl_score(&big, ""), Err(-2));
        assert_eq!(big["run_result"]["return_code"], 1);
    }
}
