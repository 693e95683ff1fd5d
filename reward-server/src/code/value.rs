//! Function-format return values: JSON text parsed with numbers kept as
//! written, and compared the way the tests expect.
//!
//! `serde_json::Value` turns integers beyond 64 bits into floats, so a
//! 30-digit answer would match any number that rounds alike. This small
//! parser keeps each number's text, and two numbers compare by the default
//! numeric rule ([`numbers_match`]): an expected integer must be met exactly
//! (`3.0` meets `3`, `999999000.0` does not meet `999999937`), any other
//! expected number within [`FLOAT_TOL`](super::compare::FLOAT_TOL) absolute
//! or relative.
//! Arrays compare element by element (a Python tuple arrives as an array),
//! objects as maps (key order ignored), and `true` is not `1`.

use std::collections::BTreeMap;

use super::compare::numbers_match;

/// Deepest nesting accepted, in arrays and objects.
pub const MAX_DEPTH: usize = 512;

/// A JSON value with numbers as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number's text.
    Number(String),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object; a repeated key keeps its last value.
    Object(BTreeMap<String, Value>),
}

/// Parses one JSON value (surrounding white space allowed).
pub fn parse(text: &str) -> Result<Value, String> {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    let value = parser.value(0)?;
    parser.space();
    if parser.at != parser.bytes.len() {
        return Err(parser.error("trailing characters"));
    }
    Ok(value)
}

/// True when `actual` equals `expected` under the rules above.
pub fn values_match(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => numbers_match(a, b),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| values_match(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| ka == kb && values_match(va, vb))
        }
        (a, b) => a == b,
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("invalid JSON at byte {}: {what}", self.at)
    }

    fn space(&mut self) {
        while self.bytes.get(self.at).is_some_and(|b| b" \t\r\n".contains(b)) {
            self.at += 1;
        }
    }

    fn eat(&mut self, literal: &str) -> bool {
        if self.text[self.at..].starts_with(literal) {
            self.at += literal.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.error(&format!("nested deeper than {MAX_DEPTH}")));
        }
        self.space();
        match self.bytes.get(self.at) {
            None => Err(self.error("unexpected end")),
            Some(b'n') if self.eat("null") => Ok(Value::Null),
            Some(b't') if self.eat("true") => Ok(Value::Bool(true)),
            Some(b'f') if self.eat("false") => Ok(Value::Bool(false)),
            Some(b'"') => self.string().map(Value::String),
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.space();
                if self.eat("]") {
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.space();
                    if self.eat("]") {
                        return Ok(Value::Array(items));
                    }
                    if !self.eat(",") {
                        return Err(self.error("expected `,` or `]`"));
                    }
                }
            }
            Some(b'{') => {
                self.at += 1;
                let mut map = BTreeMap::new();
                self.space();
                if self.eat("}") {
                    return Ok(Value::Object(map));
                }
                loop {
                    self.space();
                    if self.bytes.get(self.at) != Some(&b'"') {
                        return Err(self.error("expected a string key"));
                    }
                    let key = self.string()?;
                    self.space();
                    if !self.eat(":") {
                        return Err(self.error("expected `:`"));
                    }
                    let value = self.value(depth + 1)?;
                    map.insert(key, value);
                    self.space();
                    if self.eat("}") {
                        return Ok(Value::Object(map));
                    }
                    if !self.eat(",") {
                        return Err(self.error("expected `,` or `}`"));
                    }
                }
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("unexpected character")),
        }
    }

    /// A number, checked against JSON's grammar, kept as text.
    fn number(&mut self) -> Result<Value, String> {
        let start = self.at;
        let digits = |p: &mut Self| {
            let from = p.at;
            while p.bytes.get(p.at).is_some_and(u8::is_ascii_digit) {
                p.at += 1;
            }
            p.at - from
        };
        self.eat("-");
        let int_start = self.at;
        let n = digits(self);
        if n == 0 || (n > 1 && self.bytes[int_start] == b'0') {
            return Err(self.error("malformed number"));
        }
        if self.eat(".") && digits(self) == 0 {
            return Err(self.error("malformed number"));
        }
        if self.eat("e") || self.eat("E") {
            let _ = self.eat("+") || self.eat("-");
            if digits(self) == 0 {
                return Err(self.error("malformed number"));
            }
        }
        Ok(Value::Number(self.text[start..self.at].to_string()))
    }

    /// A string (the cursor is on its opening quote); the escapes decoded
    /// with serde_json, which knows every one of them.
    fn string(&mut self) -> Result<String, String> {
        let start = self.at;
        self.at += 1;
        loop {
            match self.bytes.get(self.at) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => self.at += 2,
                Some(_) => self.at += 1,
            }
        }
        self.at += 1;
        let literal = self
            .text
            .get(start..self.at)
            .ok_or_else(|| self.error("bad escape"))?;
        serde_json::from_str(literal).map_err(|e| self.error(&e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(a: &str, b: &str) -> bool {
        values_match(&parse(a).unwrap(), &parse(b).unwrap())
    }

    #[test]
    fn structure_and_numbers() {
        assert!(matches("[1, [2, 3], {\"a\": null}]", "[1,[2,3],{\"a\":null}]"));
        assert!(matches("{\"b\": 1, \"a\": 2}", "{\"a\": 2, \"b\": 1}"));
        assert!(matches("0.30000000000000004", "0.3"));
        assert!(matches("1", "1.0"));
        assert!(matches("\"\\u00e9\"", "\"é\""));
        assert!(!matches(
            "123456789012345678901234567890",
            "123456789012345678901234567891"
        ));
        assert!(matches(
            "-123456789012345678901234567890",
            "-123456789012345678901234567890"
        ));
        assert!(!matches("true", "1"));
        // An expected integer is met exactly (the case), an
        // expected decimal within the tolerance.
        assert!(!matches("999999000.0", "999999937"));
        assert!(!matches("[2.0000001]", "[2]"));
        assert!(matches("[3.0, 1e2]", "[3, 100]"));
        assert!(matches("2", "2.0000001"));
        assert!(!matches("[1, 2]", "[1, 2, 3]"));
        assert!(!matches("\"1\"", "1"));
        assert!(!matches("{\"a\": 1}", "{\"a\": 1, \"b\": 2}"));
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        for bad in [
            "",
            "[",
            "[1,]",
            "{\"a\" 1}",
            "01",
            "1.",
            "-",
            "\"abc",
            "\"\\",
            "tru",
            "1 2",
            "{1: 2}",
            "\"\\x\"",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert!(parse(&deep).unwrap_err().contains("deeper"));
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
    }
}
