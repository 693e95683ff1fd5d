//! `trainer data decontaminate`: drops training prompts that share a word
//! n-gram (n = 9 by default, the recipe's) with a benchmark prompt.
//!
//! Both sides are normalised the same way ([`super::normalize`]). Every
//! n-gram of every benchmark prompt goes into a hash map (64-bit hash →
//! where it first occurs); the training file is then streamed, and a prompt
//! is dropped when one of its n-grams is in the map and its words really
//! are that benchmark n-gram (a hash collision alone never drops a line).
//!
//! A prompt with fewer than n words has one gram: all its words. So two
//! short prompts match when their normalised texts are equal, and a short
//! prompt never matches inside a longer one (a 5-word training prompt like
//! "compute the sum of digits" is not contamination because a benchmark
//! problem contains those words). A prompt with no words matches nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use rayon::prelude::*;
use serde::Serialize;

use super::hash::{hash_seq, IdBuild};
use super::jsonl::{
    ensure_distinct, id_string, parse_fields, required_string, At, AtomicOutput, LineReader, CHUNK,
};
use super::normalize::{normalize, Words};
use super::report::{percent, Summary};
use crate::progress::bytes as progress;

/// Seed of the word hashes.
const SEED: u64 = 0x6465_636f_6e74_616d;

/// Arguments of `trainer data decontaminate`.
#[derive(Debug, Clone, Args)]
pub struct DecontaminateArgs {
    /// Training prompts (JSONL).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Benchmark prompts (JSONL), one or more files.
    #[arg(long, value_name = "BENCH.jsonl", num_args = 1.., required = true)]
    pub against: Vec<PathBuf>,
    /// Words per n-gram.
    #[arg(long, value_name = "N", default_value_t = 9)]
    pub n: usize,
    /// Where the kept lines go (JSONL, lines unchanged).
    #[arg(long, value_name = "OUT")]
    pub output: PathBuf,
    /// Report: one JSON line per dropped prompt with the n-gram and the
    /// benchmark prompt it matched.
    #[arg(long, value_name = "R")]
    pub report: Option<PathBuf>,
    /// The text field of the training prompts.
    #[arg(long, value_name = "NAME", default_value = "prompt")]
    pub field: String,
    /// The text field of the benchmark prompts [default: --field].
    #[arg(long, value_name = "NAME")]
    pub bench_field: Option<String>,
}

/// A benchmark prompt in the index.
#[derive(Debug, Clone)]
struct BenchPrompt {
    file: usize,
    line: u64,
    id: String,
    words: Words,
}

/// Every n-gram of the benchmark prompts.
#[derive(Debug)]
pub struct BenchIndex {
    n: usize,
    /// n-gram hash → (prompt, position of its first word).
    grams: HashMap<u64, (u32, u32), IdBuild>,
    prompts: Vec<BenchPrompt>,
    files: Vec<PathBuf>,
}

/// Where a training prompt met a benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The first shared n-gram, as normalised words.
    pub ngram: String,
    /// How many of the prompt's n-grams are benchmark n-grams.
    pub matches: usize,
    /// Index of the benchmark prompt (in [`BenchIndex`]).
    prompt: usize,
}

/// The (start, width) of each gram of a prompt of `len` words.
fn grams(len: usize, n: usize) -> impl Iterator<Item = (usize, usize)> {
    let (count, width) = match len {
        0 => (0, 0),
        l if l >= n => (l - n + 1, n),
        l => (1, l),
    };
    (0..count).map(move |s| (s, width))
}

impl BenchIndex {
    /// An empty index of `n`-grams.
    pub fn new(n: usize) -> BenchIndex {
        BenchIndex {
            n,
            grams: HashMap::default(),
            prompts: Vec::new(),
            files: Vec::new(),
        }
    }

    /// Reads the `field` of every line of `files` into the index.
    pub fn build(files: &[PathBuf], field: &str, n: usize) -> Result<BenchIndex> {
        let mut index = BenchIndex::new(n);
        for path in files {
            let file = index.files.len();
            index.files.push(path.clone());
            let mut reader = LineReader::open(path)?;
            let before = index.prompts.len();
            loop {
                let chunk = reader.chunk(CHUNK)?;
                if chunk.is_empty() {
                    break;
                }
                let parsed: Vec<Result<(u64, String, Words)>> = chunk
                    .par_iter()
                    .map(|line| {
                        let at = At {
                            path,
                            line: line.number,
                        };
                        let mut v = parse_fields(line, &[field, "id"], at)?;
                        let text = required_string(v[0].take(), field, at)?;
                        let id = id_string(v[1].as_ref())
                            .unwrap_or_else(|| format!("{}:{}", file_name(path), line.number));
                        Ok((line.number, id, normalize(&text)))
                    })
                    .collect();
                for p in parsed {
                    let (line, id, words) = p?;
                    index.add(file, line, id, words);
                }
            }
            if index.prompts.len() == before {
                bail!("{}: no benchmark prompts", path.display());
            }
        }
        Ok(index)
    }

    fn add(&mut self, file: usize, line: u64, id: String, words: Words) {
        let p = self.prompts.len() as u32;
        let hashes = words.hashes(SEED);
        for (s, w) in grams(words.len(), self.n) {
            self.grams
                .entry(hash_seq(&hashes[s..s + w]))
                .or_insert((p, s as u32));
        }
        self.prompts.push(BenchPrompt {
            file,
            line,
            id,
            words,
        });
    }

    /// Benchmark prompts indexed.
    pub fn prompts(&self) -> usize {
        self.prompts.len()
    }

    /// Distinct n-grams indexed.
    pub fn ngrams(&self) -> usize {
        self.grams.len()
    }

    /// Whether `words` share an n-gram with a benchmark prompt.
    pub fn check(&self, words: &Words) -> Option<Hit> {
        let hashes = words.hashes(SEED);
        let mut hit: Option<Hit> = None;
        for (s, w) in grams(words.len(), self.n) {
            let Some(&(p, pos)) = self.grams.get(&hash_seq(&hashes[s..s + w])) else {
                continue;
            };
            let bench = &self.prompts[p as usize];
            let pos = pos as usize;
            let bench_width = bench.words.len().min(self.n);
            let same = bench_width == w && (0..w).all(|k| bench.words.word(pos + k) == words.word(s + k));
            if !same {
                continue;
            }
            match &mut hit {
                Some(h) => h.matches += 1,
                None => {
                    hit = Some(Hit {
                        ngram: words.joined(s..s + w).to_string(),
                        matches: 1,
                        prompt: p as usize,
                    })
                }
            }
        }
        hit
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// A dropped line: the hit and the line's id.
type Contaminated = (Hit, Option<String>);

/// One line of the report.
#[derive(Serialize)]
struct Dropped<'a> {
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    ngram: &'a str,
    matches: usize,
    benchmark: &'a str,
    benchmark_file: String,
    benchmark_line: u64,
}

/// Runs the command; returns its summary table.
pub fn run(args: &DecontaminateArgs, quiet: bool) -> Result<Summary> {
    if args.n == 0 {
        bail!("--n must be at least 1");
    }
    let mut inputs: Vec<&Path> = vec![&args.input];
    inputs.extend(args.against.iter().map(PathBuf::as_path));
    let mut outputs: Vec<&Path> = vec![&args.output];
    outputs.extend(args.report.as_deref());
    ensure_distinct(&inputs, &outputs)?;
    let started = Instant::now();
    let bench_field = args.bench_field.as_deref().unwrap_or(&args.field);
    let index = BenchIndex::build(&args.against, bench_field, args.n)?;
    let index_s = started.elapsed();

    let mut reader = LineReader::open(&args.input)?;
    let bar = progress("decontaminate", reader.size(), quiet);
    let mut out = AtomicOutput::create(&args.output)?;
    let mut report = args.report.as_deref().map(AtomicOutput::create).transpose()?;
    let mut read = 0u64;
    let mut dropped_by_file = vec![0u64; index.files.len()];
    let field = args.field.as_str();
    loop {
        let chunk = reader.chunk(CHUNK)?;
        if chunk.is_empty() {
            break;
        }
        let checked: Vec<Result<Option<Contaminated>>> = chunk
            .par_iter()
            .map(|line| {
                let at = At {
                    path: &args.input,
                    line: line.number,
                };
                let mut v = parse_fields(line, &[field, "id"], at)?;
                let text = required_string(v[0].take(), field, at)?;
                Ok(index
                    .check(&normalize(&text))
                    .map(|h| (h, id_string(v[1].as_ref()))))
            })
            .collect();
        for (line, checked) in chunk.iter().zip(checked) {
            read += 1;
            match checked? {
                None => out.write_raw(line)?,
                Some((hit, id)) => {
                    let bench = &index.prompts[hit.prompt];
                    dropped_by_file[bench.file] += 1;
                    if let Some(r) = report.as_mut() {
                        r.write_json(&Dropped {
                            line: line.number,
                            id,
                            ngram: &hit.ngram,
                            matches: hit.matches,
                            benchmark: &bench.id,
                            benchmark_file: index.files[bench.file].display().to_string(),
                            benchmark_line: bench.line,
                        })?;
                    }
                }
            }
        }
        bar.set_position(reader.consumed());
        bar.set_message(format!("{read} lines, {} dropped", read - out.lines()));
    }
    bar.finish_and_clear();
    let kept = out.lines();
    out.commit()?;
    if let Some(r) = report {
        r.commit()?;
    }

    let mut s = Summary::new(format!(
        "trainer data decontaminate: {} ({}-grams)",
        args.input.display(),
        args.n
    ));
    s.row("benchmark prompts", index.prompts());
    s.sub("distinct n-grams", index.ngrams());
    s.row("lines read", read);
    s.row("kept", percent(kept, read));
    s.row("dropped", percent(read - kept, read));
    for (path, n) in index.files.iter().zip(&dropped_by_file) {
        s.sub(format!("matching {}", file_name(path)), n);
    }
    s.row("index time", format!("{:.2} s", index_s.as_secs_f64()));
    s.time(started.elapsed());
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(n: usize, prompts: &[&str]) -> BenchIndex {
        let mut ix = BenchIndex::new(n);
        ix.files.push(PathBuf::from("bench.jsonl"));
        for (i, p) in prompts.iter().enumerate() {
            ix.add(0, i as u64 + 1, format!("b{i}"), normalize(p));
        }
        ix
    }

    #[test]
    fn a_shared_ngram_is_found_after_normalisation() {
        let ix = index(
            4,
            &[
                "Let $x$ be the number of ways to tile a $2\\times 10$ board.",
                "short one",
            ],
        );
        let hit = ix
            .check(&normalize("Count: the NUMBER of ways, to tile a 3x3 grid"))
            .expect("shares 'the number of ways'");
        assert_eq!(hit.ngram, "the number of ways");
        // "the number of ways", "number of ways to", "of ways to tile", "ways to tile a".
        assert_eq!(hit.matches, 4);
        assert_eq!(ix.prompts[hit.prompt].id, "b0");
        assert!(ix.check(&normalize("the number of paths to tile")).is_none());
        assert_eq!(ix.prompts(), 2);
    }

    #[test]
    fn short_prompts_match_only_whole() {
        let ix = index(4, &["Short one!", "a b c d e f"]);
        assert!(ix.check(&normalize("SHORT, one")).is_some());
        // A short prompt inside a longer one, or a short prompt that is a
        // prefix of a long one, is not a match.
        assert!(ix.check(&normalize("a short one here")).is_none());
        assert!(ix.check(&normalize("a b c")).is_none());
        assert!(ix.check(&normalize("x a b c d")).is_some());
        assert!(ix.check(&normalize("")).is_none());
        assert!(ix.check(&normalize("short")).is_none());
    }

    #[test]
    fn grams_cover_every_window() {
        assert_eq!(grams(5, 3).collect::<Vec<_>>(), [(0, 3), (1, 3), (2, 3)]);
        assert_eq!(grams(2, 3).collect::<Vec<_>>(), [(0, 2)]);
        assert_eq!(grams(0, 3).count(), 0);
    }

    #[test]
    fn a_hash_collision_alone_does_not_drop() {
        let mut ix = index(2, &["alpha beta"]);
        // Point the hash of another bigram at the benchmark's.
        let h = hash_seq(&normalize("gamma delta").hashes(SEED));
        ix.grams.insert(h, (0, 0));
        assert!(ix.check(&normalize("gamma delta")).is_none());
        assert!(ix.check(&normalize("alpha beta")).is_some());
    }
}
