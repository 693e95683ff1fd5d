//! Streaming JSONL input and atomic output for the `trainer data` commands.
//!
//! Input lines are read in chunks and kept as raw bytes, so what a command
//! writes out is the input line exactly as it was (its key order, spacing,
//! escapes and line ending); blank lines are skipped. Only the fields a
//! command needs are parsed ([`parse_fields`]); the others are skipped
//! without being built.
//!
//! Outputs are written to a hidden temporary file in the destination's
//! directory and renamed over the destination on [`AtomicOutput::commit`],
//! so a reader never sees a half-written file and a failed run leaves the
//! old one (if any) in place. [`ensure_distinct`] refuses to write over an
//! input.

use std::fmt::{self, Display};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// Where a line is, for messages: `FILE:LINE`.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    /// The file.
    pub path: &'a Path,
    /// The line number, from 1.
    pub line: u64,
}

impl Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// One non-blank input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// Its line number in the file, from 1.
    pub number: u64,
    /// Its bytes, with the line ending it had (none on a last line without one).
    pub bytes: Vec<u8>,
}

impl RawLine {
    /// The line without its line ending.
    pub fn content(&self) -> &[u8] {
        let b = self.bytes.strip_suffix(b"\n").unwrap_or(&self.bytes);
        b.strip_suffix(b"\r").unwrap_or(b)
    }
}

/// Reads a JSONL file line by line, in chunks.
pub struct LineReader {
    path: PathBuf,
    reader: BufReader<File>,
    number: u64,
    consumed: u64,
    size: u64,
}

impl LineReader {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<LineReader> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LineReader {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 20, file),
            number: 0,
            consumed: 0,
            size,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's size in bytes (for progress).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes read so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The next non-blank line, or `None` at the end of the file.
    pub fn next_line(&mut self) -> Result<Option<RawLine>> {
        loop {
            let mut bytes = Vec::new();
            let n = self
                .reader
                .read_until(b'\n', &mut bytes)
                .with_context(|| format!("reading {}", self.path.display()))?;
            if n == 0 {
                return Ok(None);
            }
            self.number += 1;
            self.consumed += n as u64;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(RawLine {
                number: self.number,
                bytes,
            }));
        }
    }

    /// Up to `max` next non-blank lines (none at the end of the file).
    pub fn chunk(&mut self, max: usize) -> Result<Vec<RawLine>> {
        let mut out = Vec::with_capacity(max.min(1 << 16));
        while out.len() < max {
            match self.next_line()? {
                Some(l) => out.push(l),
                None => break,
            }
        }
        Ok(out)
    }
}

/// Lines per chunk of the streaming commands: enough to keep every core
/// busy, little enough to keep memory flat.
pub const CHUNK: usize = 4096;

/// Parses `line` as a JSON object and returns the values of the fields
/// `names` (in that order; `None` where a field is absent), skipping the
/// others without building them. `at` names the line in errors.
pub fn parse_fields(line: &RawLine, names: &[&str], at: At<'_>) -> Result<Vec<Option<Value>>> {
    let text = std::str::from_utf8(line.content()).map_err(|e| anyhow::anyhow!("{at}: not UTF-8 ({e})"))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let values = FieldsSeed { names }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| anyhow::anyhow!("{at}: not a JSON object: {e}"))?;
    Ok(values)
}

/// The string field `name` (`value`), or an error naming the line.
pub fn required_string(value: Option<Value>, name: &str, at: At<'_>) -> Result<String> {
    match value {
        Some(Value::String(s)) => Ok(s),
        None => bail!("{at}: no \"{name}\" field"),
        Some(other) => bail!("{at}: \"{name}\" is not a string (it is {})", kind(&other)),
    }
}

/// An id: a string as it is, a number in JSON; anything else (or nothing) is no id.
pub fn id_string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        v @ Value::Number(_) => Some(v.to_string()),
        _ => None,
    }
}

/// The JSON type of `v`, for messages.
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

struct FieldsSeed<'a> {
    names: &'a [&'a str],
}

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = Vec<Option<Value>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_> {
    type Value = Vec<Option<Value>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = vec![None; self.names.len()];
        while let Some(slot) = map.next_key_seed(KeySeed { names: self.names })? {
            match slot {
                Some(i) => out[i] = Some(map.next_value::<Value>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// A key: its index in `names`, if it is one of them.
struct KeySeed<'a> {
    names: &'a [&'a str],
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.names.iter().position(|n| *n == v))
    }
}

/// An output file written under a temporary name and renamed into place on
/// [`commit`](Self::commit); dropped without a commit, it leaves nothing.
pub struct AtomicOutput {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    lines: u64,
}

impl AtomicOutput {
    /// Starts writing `path` (its directory is created if missing).
    pub fn create(path: &Path) -> Result<AtomicOutput> {
        let name = path
            .file_name()
            .with_context(|| format!("{}: not a file name", path.display()))?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        Ok(AtomicOutput {
            path: path.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            lines: 0,
        })
    }

    /// Where it goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    fn writer(&mut self) -> &mut BufWriter<File> {
        self.out.as_mut().expect("not committed yet")
    }

    /// Writes an input line as it was (a line ending is added where the
    /// input's last line had none).
    pub fn write_raw(&mut self, line: &RawLine) -> Result<()> {
        let w = self.out.as_mut().expect("not committed yet");
        let r = w.write_all(&line.bytes).and_then(|()| {
            if line.bytes.ends_with(b"\n") {
                Ok(())
            } else {
                w.write_all(b"\n")
            }
        });
        r.with_context(|| format!("writing {}", self.tmp.display()))?;
        self.lines += 1;
        Ok(())
    }

    /// Writes `value` as one JSON line.
    pub fn write_json<T: serde::Serialize>(&mut self, value: &T) -> Result<()> {
        let tmp = self.tmp.clone();
        let w = self.writer();
        serde_json::to_writer(&mut *w, value)
            .map_err(std::io::Error::from)
            .and_then(|()| w.write_all(b"\n"))
            .with_context(|| format!("writing {}", tmp.display()))?;
        self.lines += 1;
        Ok(())
    }

    /// Flushes the file to disk and renames it into place.
    pub fn commit(mut self) -> Result<()> {
        let out = self.out.take().expect("committed once");
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", self.tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("writing {}", self.tmp.display()))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("renaming {} to {}", self.tmp.display(), self.path.display()))?;
        Ok(())
    }
}

impl Drop for AtomicOutput {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// `path` made absolute with symbolic links resolved as far as it exists
/// (an output usually does not exist yet; its directory may not either).
fn resolved(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = abs.as_path();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in tail.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                existing = parent;
            }
            _ => return abs,
        }
    }
}

/// Refuses outputs that are one of the inputs, or the same file twice.
pub fn ensure_distinct(inputs: &[&Path], outputs: &[&Path]) -> Result<()> {
    let ins: Vec<PathBuf> = inputs.iter().map(|p| resolved(p)).collect();
    let mut outs: Vec<PathBuf> = Vec::new();
    for (o, r) in outputs.iter().zip(outputs.iter().map(|p| resolved(p))) {
        if let Some(i) = ins.iter().position(|i| *i == r) {
            bail!(
                "refusing to write {}: it is the input {} (inputs are never modified)",
                o.display(),
                inputs[i].display()
            );
        }
        if outs.contains(&r) {
            bail!("{} is given as two outputs", o.display());
        }
        outs.push(r);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> RawLine {
        RawLine {
            number: 3,
            bytes: s.as_bytes().to_vec(),
        }
    }

    #[test]
    fn reads_lines_raw_and_skips_blank_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        std::fs::write(&p, "{\"a\": 1}\r\n\n   \n{\"b\":2}").unwrap();
        let mut r = LineReader::open(&p).unwrap();
        let lines = r.chunk(10).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].number, 1);
        assert_eq!(lines[0].bytes, b"{\"a\": 1}\r\n");
        assert_eq!(lines[0].content(), b"{\"a\": 1}");
        assert_eq!(lines[1].number, 4);
        assert_eq!(r.consumed(), r.size());
        assert!(r.chunk(10).unwrap().is_empty());

        let out_path = dir.path().join("sub/out.jsonl");
        let mut out = AtomicOutput::create(&out_path).unwrap();
        for l in &lines {
            out.write_raw(l).unwrap();
        }
        assert!(!out_path.exists(), "nothing visible before the commit");
        out.commit().unwrap();
        assert_eq!(
            std::fs::read_to_string(&out_path).unwrap(),
            "{\"a\": 1}\r\n{\"b\":2}\n"
        );
        // Dropped without a commit: neither the file nor a temporary remains.
        let other = dir.path().join("sub/other.jsonl");
        let mut o = AtomicOutput::create(&other).unwrap();
        o.write_json(&serde_json::json!({"x": 1})).unwrap();
        drop(o);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.jsonl"]);
    }

    #[test]
    fn parses_only_the_wanted_fields() {
        let at = At {
            path: Path::new("f.jsonl"),
            line: 3,
        };
        let v = parse_fields(
            &raw(r#"{"id": 7, "skip": {"deep": [1, {"x": "y"}]}, "prompt": "hi\n", "other": null}"#),
            &["prompt", "id", "missing"],
            at,
        )
        .unwrap();
        assert_eq!(v[0], Some(Value::String("hi\n".into())));
        assert_eq!(id_string(v[1].as_ref()).as_deref(), Some("7"));
        assert_eq!(v[2], None);

        let err = parse_fields(&raw("{\"prompt\": "), &["prompt"], at)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f.jsonl:3: not a JSON object"), "{err}");
        let err = parse_fields(&raw("[1, 2]"), &["prompt"], at)
            .unwrap_err()
            .to_string();
        assert!(err.contains("f.jsonl:3"), "{err}");
        let err = parse_fields(&raw("{} {}"), &["prompt"], at)
            .unwrap_err()
            .to_string();
        assert!(err.contains("trailing"), "{err}");
        let bad = RawLine {
            number: 3,
            bytes: vec![b'{', 0xff, b'}'],
        };
        assert!(parse_fields(&bad, &["p"], at)
            .unwrap_err()
            .to_string()
            .contains("not UTF-8"));

        let err = required_string(None, "prompt", at).unwrap_err().to_string();
        assert_eq!(err, "f.jsonl:3: no \"prompt\" field");
        let err = required_string(Some(Value::from(3)), "prompt", at)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a string (it is a number)"), "{err}");
    }

    #[test]
    fn outputs_must_differ_from_inputs_and_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        std::fs::write(&input, "{}\n").unwrap();
        let same = dir.path().join("sub/../in.jsonl");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let err = ensure_distinct(&[&input], &[&same]).unwrap_err().to_string();
        assert!(err.contains("refusing"), "{err}");
        let a = dir.path().join("new/a.jsonl");
        assert!(ensure_distinct(&[&input], &[&a]).is_ok());
        assert!(ensure_distinct(&[&input], &[&a, &a]).is_err());
    }
}
