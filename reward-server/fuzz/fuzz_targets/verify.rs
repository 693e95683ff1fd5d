//! Fuzzes the whole math verifier: the input is split at the first newline
//! into a gold answer and a response, graded in both extraction modes, and
//! each half is also normalised and parsed on its own. Any panic, hang or
//! runaway allocation is a bug.
//!
//! Run: `make fuzz` (or `cd reward-server/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run verify`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use reward_server::math::{normalize::normalize, parse::parse, verify, ExtractMode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (gold, response) = text.split_once('\n').unwrap_or((text, text));
    for mode in [ExtractMode::Lenient, ExtractMode::Boxed] {
        let _ = verify(gold, response, mode);
    }
    for part in [gold, response] {
        let _ = parse(&normalize(part).math);
    }
});
