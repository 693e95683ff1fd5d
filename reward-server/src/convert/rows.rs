//! Reading the records of an input file: JSON Lines, or one JSON array
//! (LiveCodeBench's output files), each record with its place for error
//! messages.

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use crate::cli::{io_err, CliError};

/// Where a record came from: its file and line (JSONL) or index (array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// `problems` or `samples`.
    pub file: &'static str,
    /// 1-based line for JSONL, 0-based element for a JSON array.
    pub at: At,
}

/// A record's position in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// A JSONL line (1-based).
    Line(usize),
    /// An element of a top-level JSON array (0-based).
    Element(usize),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            At::Line(n) => write!(f, "{} line {n}", self.file),
            At::Element(n) => write!(f, "{} element {n}", self.file),
        }
    }
}

/// One record: a JSON object and where it came from.
#[derive(Debug, Clone)]
pub struct Row {
    /// Its place.
    pub place: Place,
    /// Its 0-based index among the file's records (a default problem id).
    pub index: usize,
    /// The object.
    pub fields: Map<String, Value>,
}

/// Reads `path` (`-` for standard input) as JSONL or as one JSON array of
/// objects. Blank lines are skipped. A record that is not a JSON object is
/// an error naming its place.
pub fn read_rows(path: &Path, file: &'static str) -> Result<Vec<Row>, CliError> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(io_err("cannot read", path))?
    } else {
        std::fs::read_to_string(path).map_err(io_err("cannot read", path))?
    };
    parse_rows(&text, file).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

/// [`read_rows`] on text.
pub fn parse_rows(text: &str, file: &'static str) -> Result<Vec<Row>, String> {
    let object = |v: Value, place: Place, index: usize| match v {
        Value::Object(fields) => Ok(Row { place, index, fields }),
        other => Err(format!("{place}: expected a JSON object, found {}", kind(&other))),
    };
    if text.trim_start().starts_with('[') {
        let all: Vec<Value> =
            serde_json::from_str(text).map_err(|e| format!("{file}: not a JSON array: {e}"))?;
        return all
            .into_iter()
            .enumerate()
            .map(|(k, v)| {
                object(
                    v,
                    Place {
                        file,
                        at: At::Element(k),
                    },
                    k,
                )
            })
            .collect();
    }
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let place = Place {
            file,
            at: At::Line(n + 1),
        };
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{place}: not valid JSON: {e}"))?;
        let index = rows.len();
        rows.push(object(v, place, index)?);
    }
    Ok(rows)
}

/// "a string", "an array", ... for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Row {
    /// The first of `names` present and not null.
    pub fn first<'a>(&'a self, names: &[&'a str]) -> Option<(&'a str, &'a Value)> {
        names
            .iter()
            .find_map(|n| self.fields.get(*n).filter(|v| !v.is_null()).map(|v| (*n, v)))
    }

    /// A required string field, or an error naming the place and field.
    pub fn string(&self, name: &str) -> Result<&str, String> {
        match self.fields.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(format!(
                "{}: field `{name}` is {}, expected a string",
                self.place,
                kind(other)
            )),
            None => Err(format!("{}: missing field `{name}`", self.place)),
        }
    }

    /// A field that holds JSON, either as a value or as a string of JSON
    /// text (how Hugging Face datasets keep nested data), decoded.
    pub fn json(&self, name: &str) -> Result<Value, String> {
        match self.fields.get(name) {
            Some(Value::String(s)) => serde_json::from_str(s)
                .map_err(|e| format!("{}: field `{name}` is a string but not JSON: {e}", self.place)),
            Some(v) => Ok(v.clone()),
            None => Err(format!("{}: missing field `{name}`", self.place)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_and_arrays_with_places() {
        let rows = parse_rows("{\"a\": 1}\n\n{\"a\": 2}\n", "problems").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].place.to_string(), "problems line 3");
        assert_eq!(rows[1].index, 1);
        let rows = parse_rows("[{\"a\": 1}, {\"b\": 2}]", "samples").unwrap();
        assert_eq!(rows[1].place.to_string(), "samples element 1");
        assert_eq!(
            parse_rows("{\"a\": 1}\n[1]\n", "problems").unwrap_err(),
            "problems line 2: expected a JSON object, found an array"
        );
        assert!(parse_rows("{\"a\": 1}\n{oops\n", "problems")
            .unwrap_err()
            .starts_with("problems line 2: not valid JSON"));
        let row = &parse_rows("{\"t\": \"[1, 2]\", \"n\": 3}", "problems").unwrap()[0];
        assert_eq!(row.json("t").unwrap(), serde_json::json!([1, 2]));
        assert_eq!(
            row.string("n").unwrap_err(),
            "problems line 1: field `n` is a number, expected a string"
        );
        assert_eq!(row.string("x").unwrap_err(), "problems line 1: missing field `x`");
    }
}
