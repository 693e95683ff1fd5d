//! Assert tests as steps the host runs one at a time, decided by the host
//! itself wherever their shape allows.
//!
//! When an `assert` item is loaded, its test code goes through the
//! converter (`sandboxes/harness/asserts.py`), which runs in a sandbox
//! instance of its own, kept alive between conversions (`sandbox::served`):
//! no submitted program ever runs there, so it can use Python's own parser
//! and `ast.literal_eval` and be trusted. It checks that
//! the tests compile (else the item is `invalid`) and, unless the item turns
//! it off (`"host_compare": false`), turns each assert of the form
//! `assert f(<literals>) == <literal>` (and a few like it: `is True`,
//! truthiness, `math.isclose`, `abs(f(x) - v) < eps`, wrappers such as
//! `sorted(f(x))`, HumanEval's `check(candidate)`) into a [`Step::Call`]:
//! the sandbox calls the program's function and sends the value back as
//! typed JSON, and a [`Check`] compares it here, with Python's semantics
//! ([`super::pyvalue`]). The expected values never enter the program's
//! sandbox, so an always-equal object, a patched `==` or a peek at the
//! caller's frame cannot help. What is left runs as [`Step::Code`] in the
//! tests' own interpreter (`sandbox::runner`), which reaches the program
//! only through the host, with data.
//!
//! Conversions are cached by test code: the samples of one prompt share it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;

use super::pyvalue::{self, PyValue};
use crate::api::AssertReport;
use crate::sandbox::limits::fuel_for;
use crate::sandbox::{Limits, Outcome, Retire, Sandbox, Served, ServedGuest, Step, ValueCheck};

/// The converter: the typed-data codec, then the converter itself.
const CONVERTER: &str = concat!(
    include_str!("../../../sandboxes/harness/data.py"),
    include_str!("../../../sandboxes/harness/asserts.py")
);

/// What the converter may use: the test code is data, not a submission, but
/// a big one still must not hang a worker.
fn converter_limits() -> Limits {
    Limits {
        fuel: fuel_for(Duration::from_secs(30)),
        wall: Duration::from_secs(180),
        memory_bytes: 1 << 30,
        output_bytes: 256 << 20,
    }
}

/// Most conversions kept, and most bytes of test code behind them.
const CACHE_ENTRIES: usize = 4096;
const CACHE_BYTES: usize = 64 << 20;

/// How the host decides a converted assert.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// `value == expected`, as Python's `==`.
    Eq(PyValue),
    /// `value is True` / `False` / `None`.
    Is(PyValue),
    /// `assert value`.
    Truthy,
    /// `assert not value`.
    Falsy,
    /// `math.isclose(value, expected, rel_tol=, abs_tol=)`.
    IsClose {
        /// The expected value.
        expected: f64,
        /// Relative tolerance.
        rel_tol: f64,
        /// Absolute tolerance.
        abs_tol: f64,
    },
    /// `abs(value - expected) < eps` (`<=` when not `strict`).
    AbsDiff {
        /// The expected value.
        expected: f64,
        /// The bound.
        eps: f64,
        /// `<` rather than `<=`.
        strict: bool,
    },
}

impl Check {
    /// Whether `got` passes, as the assert would have decided.
    pub fn accepts(&self, got: &PyValue) -> bool {
        match self {
            Check::Eq(want) => pyvalue::py_eq(got, want),
            Check::Is(want) => got == want,
            Check::Truthy => got.truthy(),
            Check::Falsy => !got.truthy(),
            Check::IsClose {
                expected,
                rel_tol,
                abs_tol,
            } => got
                .as_f64()
                .is_some_and(|a| is_close(a, *expected, *rel_tol, *abs_tol)),
            Check::AbsDiff {
                expected,
                eps,
                strict,
            } => got.as_f64().is_some_and(|a| {
                let diff = (a - expected).abs();
                if *strict {
                    diff < *eps
                } else {
                    diff <= *eps
                }
            }),
        }
    }

    /// What the assert wanted, for a message.
    fn wanted(&self) -> String {
        match self {
            Check::Eq(want) => format!("== {}", pyvalue::repr(want)),
            Check::Is(want) => format!("is {}", pyvalue::repr(want)),
            Check::Truthy => "a true value".into(),
            Check::Falsy => "a false value".into(),
            Check::IsClose {
                expected,
                rel_tol,
                abs_tol,
            } => format!("close to {expected:?} (rel_tol={rel_tol:?}, abs_tol={abs_tol:?})"),
            Check::AbsDiff {
                expected,
                eps,
                strict,
            } => {
                format!(
                    "within {eps:?} of {expected:?}{}",
                    if *strict { "" } else { " or exactly that" }
                )
            }
        }
    }
}

/// Python's `math.isclose`.
fn is_close(a: f64, b: f64, rel_tol: f64, abs_tol: f64) -> bool {
    if a == b {
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    let diff = (b - a).abs();
    diff <= (rel_tol * b).abs() || diff <= (rel_tol * a).abs() || diff <= abs_tol
}

/// An assert item's tests, ready to run.
#[derive(Debug)]
pub struct AssertPlan {
    /// The steps for the sandbox.
    pub steps: Vec<Step>,
    /// For each step: its line and, for a call, what was called and how
    /// it is checked (for messages).
    described: Vec<Described>,
    /// Which lines the host compared and which ran as code, in the tests' interpreter.
    pub report: AssertReport,
}

#[derive(Debug)]
struct Described {
    line: u32,
    call: Option<(String, Check)>,
}

impl AssertPlan {
    /// The line of the test code where step `step` starts.
    pub fn line_of(&self, step: usize) -> Option<u32> {
        self.described.get(step).map(|d| d.line)
    }

    /// Why the host rejected `value` (typed JSON) at call step `step`.
    pub fn rejection(&self, step: usize, value: &str) -> String {
        let got = pyvalue::parse(value).map_or_else(|e| format!("<unreadable: {e}>"), |v| pyvalue::repr(&v));
        match self.described.get(step) {
            Some(Described {
                line,
                call: Some((text, check)),
            }) => format!(
                "the test on line {line} failed (compared by the host): {text} returned {got}, expected {}",
                check.wanted()
            ),
            _ => format!("a test failed: the value was {got}"),
        }
    }
}

/// The converter's answer.
#[derive(Deserialize)]
struct Converted {
    error: Option<String>,
    #[serde(default)]
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
struct RawStep {
    line: u32,
    call: Option<String>,
    args: Option<String>,
    kwargs: Option<String>,
    wrap: Option<String>,
    check: Option<RawCheck>,
    text: Option<String>,
    code: Option<String>,
    #[serde(default)]
    lines: Vec<u32>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum RawCheck {
    Eq {
        value: String,
    },
    Is {
        value: String,
    },
    Truthy,
    Falsy,
    Isclose {
        value: String,
        rel_tol: f64,
        abs_tol: f64,
    },
    Absdiff {
        value: String,
        eps: String,
        strict: bool,
    },
}

impl RawCheck {
    fn into_check(self) -> Result<Check, String> {
        let number = |text: &str| {
            pyvalue::parse(text)?
                .as_f64()
                .ok_or_else(|| format!("{text} is not a number"))
        };
        Ok(match self {
            RawCheck::Eq { value } => Check::Eq(pyvalue::parse(&value)?),
            RawCheck::Is { value } => Check::Is(pyvalue::parse(&value)?),
            RawCheck::Truthy => Check::Truthy,
            RawCheck::Falsy => Check::Falsy,
            RawCheck::Isclose {
                value,
                rel_tol,
                abs_tol,
            } => Check::IsClose {
                expected: number(&value)?,
                rel_tol,
                abs_tol,
            },
            RawCheck::Absdiff { value, eps, strict } => Check::AbsDiff {
                expected: number(&value)?,
                eps: number(&eps)?,
                strict,
            },
        })
    }
}

/// The steps of `code`, from the cache or the converter; an `Err` says why
/// the tests are unusable (they do not compile).
pub fn plan(sandbox: &Sandbox, code: &str, host_compare: bool) -> Result<Arc<AssertPlan>, String> {
    if let Some(hit) = cache().get(host_compare, code) {
        return hit;
    }
    let planned = convert(sandbox, code, host_compare).map(Arc::new);
    cache().put(host_compare, code, planned.clone());
    planned
}

/// Compiles [`CONVERTER`] in the guest and prints its code object,
/// marshalled: parsing and compiling its ~600 lines was most of a
/// conversion's time.
const COMPILE_CONVERTER: &str = "\
import marshal, sys
source = sys.stdin.read()
sys.stdout.buffer.write(marshal.dumps(compile(source, '<converter>', 'exec', dont_inherit=True)))
";

/// Runs the marshalled converter that comes first on stdin (its length in
/// 8 little-endian bytes, then its bytes); the converter reads the rest.
const RUN_CONVERTER: &str = "\
import marshal, sys
n = int.from_bytes(sys.stdin.buffer.read(8), 'little')
exec(marshal.loads(sys.stdin.buffer.read(n)), {'__name__': '__main__'})
";

/// The converter's code object, compiled once per process by the guest
/// (`None` when that failed: conversions then compile the source).
fn compiled_converter(sandbox: &Sandbox) -> Option<&'static [u8]> {
    static COMPILED: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
    COMPILED
        .get_or_init(|| {
            let run = sandbox
                .run_python(COMPILE_CONVERTER, CONVERTER.as_bytes(), &converter_limits())
                .ok()?;
            (run.outcome == Outcome::Exited(0) && !run.stdout.is_empty()).then_some(run.stdout)
        })
        .as_deref()
}

/// Keeps the marshalled converter alive between conversions: it runs the
/// converter's `serve()`, which takes one test code after another over the
/// door (`sandbox::served`). Same stdin as [`RUN_CONVERTER`].
const SERVE_CONVERTER: &str = "\
import marshal, sys
n = int.from_bytes(sys.stdin.buffer.read(8), 'little')
converter = {'__name__': 'converter'}
exec(marshal.loads(sys.stdin.buffer.read(n)), converter)
converter['serve']()
";

/// Served converters kept idle per process (a worker process converts one
/// item's tests at a time), and when one is replaced: an instance's start-up
/// and exit were half of a conversion's time (~1.6 of ~3.7 ms). A fresh one
/// starts after this many conversions, or once its linear memory has grown
/// past the bound (the snapshot's heap is 40 MiB), so what an idle converter
/// holds stays bounded (README's memory bound counts it).
const IDLE_CONVERTERS: usize = 1;
const CONVERTER_RETIRE: Retire = Retire {
    jobs: 500,
    memory_bytes: 64 << 20,
};

/// The stdin of [`RUN_CONVERTER`] and [`SERVE_CONVERTER`]: the compiled
/// converter's length (8 bytes, little endian), the converter, then `input`
/// (for a one-shot run).
fn converter_stdin(compiled: &[u8], input: &str) -> Vec<u8> {
    let mut stdin = Vec::with_capacity(8 + compiled.len() + input.len());
    stdin.extend_from_slice(&(compiled.len() as u64).to_le_bytes());
    stdin.extend_from_slice(compiled);
    stdin.extend_from_slice(input.as_bytes());
    stdin
}

fn idle_converters() -> &'static Mutex<Vec<ServedGuest>> {
    static IDLE: std::sync::OnceLock<Mutex<Vec<ServedGuest>>> = std::sync::OnceLock::new();
    IDLE.get_or_init(Mutex::default)
}

/// The converter's answer to `input` from a served instance: `None` when
/// none could be had (the caller runs the converter once instead). Only for
/// the process's shared sandbox, whose idle converters live as long as it.
fn ask_served(sandbox: &Sandbox, compiled: &[u8], input: &str) -> Option<Result<Vec<u8>, (Outcome, String)>> {
    if !Sandbox::shared_if_loaded().is_some_and(|shared| std::ptr::eq(shared, sandbox)) {
        return None;
    }
    let idle = idle_converters()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop();
    let mut converter = match idle {
        Some(converter) => converter,
        None => {
            tracing::debug!("starting a served assert converter");
            sandbox
                .serve_python(
                    SERVE_CONVERTER,
                    converter_stdin(compiled, ""),
                    converter_limits(),
                    CONVERTER_RETIRE,
                )
                .map_err(|e| tracing::warn!("could not start a served assert converter: {e}"))
                .ok()?
        }
    };
    match converter.ask(input) {
        Served::Answer { text, retired } => {
            if !retired {
                let mut idle = idle_converters().lock().unwrap_or_else(PoisonError::into_inner);
                if idle.len() < IDLE_CONVERTERS {
                    idle.push(converter);
                }
            }
            Some(Ok(text.into_bytes()))
        }
        Served::Stopped { outcome, stderr } => Some(Err((outcome, stderr))),
        Served::Gone => None,
    }
}

fn convert(sandbox: &Sandbox, code: &str, host_compare: bool) -> Result<AssertPlan, String> {
    let input = format!("{}\n{code}", u8::from(host_compare));
    let compiled = compiled_converter(sandbox);
    let served = compiled.and_then(|compiled| ask_served(sandbox, compiled, &input));
    let answer = match served {
        Some(answer) => answer,
        None => {
            let (source, stdin) = match compiled {
                Some(compiled) => (RUN_CONVERTER, converter_stdin(compiled, &input)),
                None => (CONVERTER, input.into_bytes()),
            };
            let run = sandbox
                .run_python(source, &stdin, &converter_limits())
                .map_err(|e| format!("the sandbox failed while reading the assert tests: {e}"))?;
            if run.outcome == Outcome::Exited(0) {
                Ok(run.stdout)
            } else {
                Err((run.outcome, String::from_utf8_lossy(&run.stderr).into_owned()))
            }
        }
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err((outcome, stderr)) => {
            // Not the tests' fault that we could not read them (they are
            // huge, or nest deeper than our parser goes): run them whole,
            // as code, as with `host_compare: false`.
            tracing::warn!(
                "the assert converter stopped ({outcome:?}); the tests run whole, as code: {}",
                stderr.trim_end()
            );
            return Ok(whole(code));
        }
    };
    let converted: Converted = serde_json::from_slice(&answer)
        .map_err(|e| format!("the assert converter's answer is unreadable (please report it): {e}"))?;
    if let Some(error) = converted.error {
        return Err(format!("the assert tests do not compile: {error}"));
    }
    let mut plan = AssertPlan {
        steps: Vec::new(),
        described: Vec::new(),
        report: AssertReport::default(),
    };
    for raw in converted.steps {
        let bad = || "the assert converter's step is incomplete (please report it)".to_string();
        match (raw.call, raw.code) {
            (Some(name), None) => {
                let check = Arc::new(raw.check.ok_or_else(bad)?.into_check()?);
                let host_check = Arc::clone(&check);
                plan.steps.push(Step::Call {
                    name: name.clone(),
                    args: raw.args.ok_or_else(bad)?,
                    kwargs: raw.kwargs,
                    wrap: raw.wrap,
                    check: ValueCheck(Arc::new(move |value: &str| {
                        pyvalue::parse(value).is_ok_and(|got| host_check.accepts(&got))
                    })),
                });
                plan.described.push(Described {
                    line: raw.line,
                    call: Some((raw.text.unwrap_or(name), (*check).clone())),
                });
                plan.report.host_compared.push(raw.line);
            }
            (None, Some(source)) => {
                plan.steps.push(Step::Code {
                    source,
                    line: raw.line,
                });
                plan.described.push(Described {
                    line: raw.line,
                    call: None,
                });
                plan.report.in_sandbox.extend(raw.lines);
            }
            _ => return Err(bad()),
        }
    }
    Ok(plan)
}

/// The whole test code as one code step.
fn whole(code: &str) -> AssertPlan {
    AssertPlan {
        steps: vec![Step::Code {
            source: code.to_string(),
            line: 1,
        }],
        described: vec![Described { line: 1, call: None }],
        report: AssertReport {
            host_compared: Vec::new(),
            in_sandbox: vec![1],
        },
    }
}

type Planned = Result<Arc<AssertPlan>, String>;

/// Conversions by test code, one map per `host_compare`, oldest evicted
/// first.
#[derive(Default)]
struct Cache {
    maps: [HashMap<Arc<str>, Planned>; 2],
    order: VecDeque<(bool, Arc<str>)>,
    bytes: usize,
}

#[derive(Default)]
struct SharedCache(Mutex<Cache>);

fn cache() -> &'static SharedCache {
    static CACHE: std::sync::OnceLock<SharedCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(SharedCache::default)
}

impl SharedCache {
    fn get(&self, host_compare: bool, code: &str) -> Option<Planned> {
        let cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        cache.maps[usize::from(host_compare)].get(code).cloned()
    }

    fn put(&self, host_compare: bool, code: &str, planned: Planned) {
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let map = usize::from(host_compare);
        if cache.maps[map].contains_key(code) {
            return;
        }
        let key: Arc<str> = Arc::from(code);
        cache.bytes += code.len();
        cache.order.push_back((host_compare, Arc::clone(&key)));
        cache.maps[map].insert(key, planned);
        while cache.order.len() > CACHE_ENTRIES || cache.bytes > CACHE_BYTES {
            let Some((flag, old)) = cache.order.pop_front() else {
                break;
            };
            cache.bytes -= old.len();
            cache.maps[usize::from(flag)].remove(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> PyValue {
        pyvalue::parse(text).unwrap()
    }

    #[test]
    fn checks_decide_as_the_assert_would() {
        assert!(Check::Eq(v("3")).accepts(&v("3.0")));
        assert!(!Check::Eq(v("3")).accepts(&v("\"3\"")));
        assert!(Check::Is(v("true")).accepts(&v("true")));
        assert!(!Check::Is(v("true")).accepts(&v("1")), "`1 is True` is false");
        assert!(!Check::Is(v("null")).accepts(&v("false")));
        assert!(Check::Truthy.accepts(&v("[0]")));
        assert!(Check::Falsy.accepts(&v("\"\"")));
        let close = Check::IsClose {
            expected: 0.5,
            rel_tol: 1e-3,
            abs_tol: 0.0,
        };
        assert!(close.accepts(&v("0.5004")));
        assert!(!close.accepts(&v("0.51")));
        assert!(!close.accepts(&v("\"0.5\"")));
        let within = Check::AbsDiff {
            expected: 2.0 / 3.0,
            eps: 1e-6,
            strict: true,
        };
        assert!(within.accepts(&v("0.6666667")));
        assert!(!within.accepts(&v("0.667")));
        assert!(is_close(f64::INFINITY, f64::INFINITY, 0.0, 0.0));
        assert!(!is_close(f64::INFINITY, 1e308, 1.0, 0.0));
    }

    /// Test codes of every kind the converter answers: host-compared
    /// asserts, code, HumanEval's `check`, tests that do not compile, only
    /// compiling (flag 0), a warning while compiling, empty tests.
    const INPUTS: [&str; 8] = [
        "1\nassert add(1, 2) == 3\nassert add(2, 5) == 7\n",
        "1\nfor i in range(3):\n    assert add(i, 1) == i + 1\n",
        "1\ndef check(candidate):\n    assert candidate([1, 2]) == [2, 1]\n    assert candidate([]) == []\n\ncheck(rev)\n",
        "1\nassert add(1, 2 == 3\n",
        "0\nassert add(1, 2) == 3\n",
        "1\nassert f('\\d') == 1\nassert 1 is 1\n",
        "1\n",
        "1\nimport math\nassert math.isclose(area(2), 12.566, rel_tol=1e-3)\n",
    ];

    #[test]
    fn a_served_converter_answers_as_a_fresh_one_does() {
        let Some(sandbox) = crate::sandbox::test_sandbox() else {
            return;
        };
        let compiled = compiled_converter(sandbox).expect("the converter compiles");
        let fresh = |input: &str| {
            let run = sandbox
                .run_python(
                    RUN_CONVERTER,
                    &converter_stdin(compiled, input),
                    &converter_limits(),
                )
                .unwrap();
            assert_eq!(
                run.outcome,
                Outcome::Exited(0),
                "{}",
                String::from_utf8_lossy(&run.stderr)
            );
            String::from_utf8(run.stdout).unwrap().trim_end().to_string()
        };
        let mut served = sandbox
            .serve_python(
                SERVE_CONVERTER,
                converter_stdin(compiled, ""),
                converter_limits(),
                CONVERTER_RETIRE,
            )
            .unwrap();
        // Twice over: nothing of one conversion changes a later one.
        for input in INPUTS.iter().chain(INPUTS.iter()) {
            let Served::Answer { text, retired } = served.ask(input) else {
                panic!("the served converter stopped on {input:?}");
            };
            assert!(!retired);
            assert_eq!(text, fresh(input), "{input:?}");
        }
        // A star import runs a module's code in the converter: it answers,
        // then a fresh instance takes over.
        let star = "1\nfrom math import *\nassert sqrt(4) == 2\nassert add(1, 2) == 3\n";
        let Served::Answer { text, retired } = served.ask(star) else {
            panic!("the served converter stopped on the star import");
        };
        assert!(retired);
        assert_eq!(text, fresh(star));
        assert_eq!(served.ask(INPUTS[0]), Served::Gone);
    }

    #[test]
    fn the_cache_evicts_the_oldest_first() {
        let cache = SharedCache::default();
        for k in 0..CACHE_ENTRIES + 5 {
            cache.put(true, &format!("assert f({k}) == 1"), Err(String::new()));
        }
        assert!(cache.get(true, "assert f(0) == 1").is_none());
        assert!(cache
            .get(true, &format!("assert f({}) == 1", CACHE_ENTRIES + 4))
            .is_some());
        assert!(cache
            .get(false, &format!("assert f({}) == 1", CACHE_ENTRIES + 4))
            .is_none());
        assert_eq!(cache.0.lock().unwrap().maps[1].len(), CACHE_ENTRIES);
    }
}
