//! What a JSON body costs in memory once parsed: an upper bound, computed by
//! one pass over its bytes before anything is parsed, so that admission can
//! charge a request for it ([`super::admission`]).
//!
//! Parsing JSON into `serde_json::Value` (which the items' `tests` and their
//! unknown fields still go through) costs far more than the text: each value
//! is 32 bytes in its array, whose buffer doubles as it grows, and each
//! object is a B-tree with a ~630-byte leaf even for one key. Measured with
//! serde_json 1.0.154: `[1,1,...]` takes 25x its size at the peak, and
//! `[{"a":1},...]` 83x. A request is charged its body plus [`tree_cost`],
//! which the tests below check against the allocations the server's own
//! parsing makes, on such shapes and on ordinary items.

/// Heap bytes per array, beyond its elements (a 4-slot first buffer).
const PER_ARRAY: u64 = 160;
/// Heap bytes per object: one B-tree leaf, and room for the parser's copies.
const PER_OBJECT: u64 = 768;
/// Heap bytes per value an array or object may hold: its slot (32 bytes),
/// doubled for the buffer's growth and once more while it is copied.
const PER_VALUE: u64 = 96;
/// Heap bytes per object entry beyond its value: B-tree nodes half full
/// after splits.
const PER_ENTRY: u64 = 128;
/// Heap bytes per string (key or value) beyond its text: the allocator's
/// rounding and header.
const PER_STRING: u64 = 32;
/// The parsed tree may be alive up to this many times at once: a `Value`,
/// serde's buffered copy of an item's unknown fields, and the value rebuilt
/// from it.
const COPIES: u64 = 3;

/// Counts of what a JSON text holds, from [`scan`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    arrays: u64,
    objects: u64,
    /// Commas, colons and opening brackets: every value but the root follows one.
    separators: u64,
    colons: u64,
    strings: u64,
    string_bytes: u64,
}

/// One pass over `json` (valid or not: the counts only bound what a parser
/// could build from it).
pub(crate) fn scan(json: &[u8]) -> Shape {
    let mut shape = Shape::default();
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
                shape.string_bytes += 1;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            } else {
                shape.string_bytes += 1;
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                shape.strings += 1;
            }
            b'[' => {
                shape.arrays += 1;
                shape.separators += 1;
            }
            b'{' => {
                shape.objects += 1;
                shape.separators += 1;
            }
            b',' => shape.separators += 1,
            b':' => {
                shape.separators += 1;
                shape.colons += 1;
            }
            _ => {}
        }
    }
    shape
}

impl Shape {
    /// The most values the text can hold: each but the first follows a
    /// comma, a colon or an opening bracket.
    pub(crate) fn values_at_most(&self) -> u64 {
        self.separators + 1
    }
}

/// An upper bound on the heap bytes that parsing a JSON text of shape `s`
/// (from [`scan`]) takes, beyond the text itself.
pub(crate) fn tree_cost(s: &Shape) -> u64 {
    let tree = PER_ARRAY * s.arrays
        + PER_OBJECT * s.objects
        + PER_VALUE * (s.separators + 1)
        + PER_ENTRY * s.colons
        + PER_STRING * s.strings
        + s.string_bytes;
    COPIES.saturating_mul(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Counts this thread's live heap bytes and their peak, so a test can
    /// measure what one call allocates while other tests run.
    struct Counting;

    thread_local! {
        static LIVE: Cell<i64> = const { Cell::new(0) };
        static PEAK: Cell<i64> = const { Cell::new(0) };
    }

    fn track(delta: i64) {
        let _ = LIVE.try_with(|live| {
            let now = live.get() + delta;
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    #[allow(unsafe_code)]
    // SAFETY: every call is passed to the system allocator unchanged; the
    // bookkeeping touches only const-initialised thread-locals, which never
    // allocate.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            track(layout.size() as i64);
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            track(-(layout.size() as i64));
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // Old and new buffers both exist while the bytes are copied.
            track(new_size as i64);
            let moved = unsafe { System.realloc(ptr, layout, new_size) };
            track(-(layout.size() as i64));
            moved
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// The peak heap bytes `f` allocates on this thread, above what was live
    /// before.
    fn peak_of(f: impl FnOnce()) -> u64 {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        f();
        (PEAK.with(Cell::get) - base).max(0) as u64
    }

    fn body(items: &str) -> Vec<u8> {
        format!("{{\"items\": [{items}]}}").into_bytes()
    }

    fn repeat(unit: &str, n: usize) -> String {
        vec![unit; n].join(",")
    }

    /// Every shape: the charge covers what the server's parsing of a reward
    /// request really allocates (the body itself not counted on either side).
    #[test]
    fn the_charge_covers_the_parse_of_hostile_and_ordinary_bodies() {
        let n = 20_000;
        let code_case = r#"{"input": "3 4\n", "output": "7"}"#;
        let shapes: Vec<(&str, Vec<u8>)> = vec![
            (
                "ints in an unknown field",
                body(&format!(
                    r#"{{"task": "math", "response": "1", "answer": "1", "x": [{}]}}"#,
                    repeat("1", n)
                )),
            ),
            (
                "one-key objects in an unknown field",
                body(&format!(
                    r#"{{"task": "math", "response": "1", "answer": "1", "x": [{}]}}"#,
                    repeat(r#"{"a":1}"#, n)
                )),
            ),
            (
                "nested arrays in tests",
                body(&format!(
                    r#"{{"task": "code", "response": "1", "tests": {{"type": "stdio", "x": [{}]}}}}"#,
                    repeat("[1]", n)
                )),
            ),
            (
                "empty strings",
                body(&format!(
                    r#"{{"task": "math", "response": "", "x": [{}]}}"#,
                    repeat(r#""""#, n)
                )),
            ),
            ("items that are numbers", body(&repeat("1", n))),
            ("empty objects as items", body(&repeat("{}", n))),
            (
                "math items",
                body(&repeat(
                    r#"{"id": 1, "task": "math", "response": "so \\boxed{1}", "answer": "1"}"#,
                    n / 10,
                )),
            ),
            (
                "code items",
                body(&repeat(
                    &format!(
                        r#"{{"id": "c", "task": "code", "response": "```python\nprint(1)\n```", "tests": {{"type": "stdio", "cases": [{}]}}}}"#,
                        repeat(code_case, 20)
                    ),
                    n / 100,
                )),
            ),
            (
                "long responses",
                body(&repeat(
                    &format!(
                        r#"{{"task": "math", "response": "{}", "answer": "1"}}"#,
                        "x".repeat(10_000)
                    ),
                    50,
                )),
            ),
        ];
        for (name, json) in shapes {
            let charge = tree_cost(&scan(&json)) + crate::serve::reward::items_cost(&scan(&json), usize::MAX);
            let used = peak_of(|| {
                let parsed = crate::serve::reward::parse_items(&json, usize::MAX);
                assert!(parsed.is_ok(), "{name}: {:?}", parsed.err());
                drop(parsed);
            });
            assert!(
                used <= charge,
                "{name}: parsing took {used} bytes, charged {charge} (body {})",
                json.len()
            );
            eprintln!(
                "{name:>36}: body {:>9}, parse took {:>5.1}x it, charged {:>5.1}x",
                json.len(),
                used as f64 / json.len() as f64,
                charge as f64 / json.len() as f64
            );
        }
    }

    #[test]
    fn strings_hide_brackets_and_escapes() {
        let s = scan(br#"{"a": "[,{:\"}", "b": [1, 2]}"#);
        assert_eq!(s.objects, 1);
        assert_eq!(s.arrays, 1);
        assert_eq!(s.colons, 2);
        assert_eq!(s.strings, 3);
        // `\"` decodes to one byte.
        assert_eq!(s.string_bytes, 1 + 6 + 1);
    }
}
