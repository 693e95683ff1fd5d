//! `trainer data dedup`: exact and near-duplicate prompts, within and across
//! files; the first occurrence of each cluster is kept.
//!
//! Two passes over the inputs (in the order given, each in line order):
//!
//! 1. Every prompt is normalised ([`super::normalize`]). Prompts with the
//!    same normalised text (a 128-bit hash of it) are exact duplicates.
//!    Each distinct text gets a MinHash signature of its word shingles
//!    ([`super::minhash`]); LSH bands propose candidates among the texts
//!    seen before, and a candidate whose estimated Jaccard similarity is at
//!    least `--threshold` joins the same cluster (union-find: clusters are
//!    transitive, single-linkage).
//! 2. The inputs are read again and the first prompt of each cluster (by
//!    file order, then line order) is written out unchanged; the others are
//!    dropped and reported with their cluster.
//!
//! Memory: the signatures (4 bytes x `--num-perm` per distinct prompt, 512
//! bytes at the default 128) and the LSH buckets (about 25 bytes per prompt
//! and band) stay in memory, about 2.2 GB for a million prompts; the lines
//! themselves are streamed. A bucket holds at most [`MAX_BUCKET`] prompts
//! (all with the same band values): a later prompt is still compared with
//! those, which bounds the work on huge clusters of near-identical prompts.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use rayon::prelude::*;
use serde::Serialize;

use super::hash::{hash_bytes, IdBuild};
use super::jsonl::{
    ensure_distinct, id_string, parse_fields, required_string, At, AtomicOutput, LineReader, CHUNK,
};
use super::minhash::{shingles, similarity, LshParams, MinHasher};
use super::normalize::normalize;
use super::report::{percent, Summary};
use crate::progress::bytes as progress;

/// Most prompts kept in one LSH bucket.
pub const MAX_BUCKET: usize = 256;

const SEED: u64 = 0x6465_6475_7000_0001;

/// Arguments of `trainer data dedup`.
#[derive(Debug, Clone, Args)]
pub struct DedupArgs {
    /// Input JSONL files, deduplicated together in this order.
    #[arg(long, value_name = "FILE", num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    /// Where the kept lines go, with a single --input.
    #[arg(
        long,
        value_name = "OUT",
        conflicts_with = "output_dir",
        required_unless_present = "output_dir"
    )]
    pub output: Option<PathBuf>,
    /// Directory for the kept lines of every input, each under its input's
    /// file name.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Report: one JSON line per cluster of duplicates (the kept prompt and
    /// the dropped ones with their similarity to it).
    #[arg(long, value_name = "R")]
    pub report: Option<PathBuf>,
    /// The text field of the prompts.
    #[arg(long, value_name = "NAME", default_value = "prompt")]
    pub field: String,
    /// Estimated Jaccard similarity (of word-shingle sets) from which two
    /// prompts are near duplicates.
    #[arg(long, value_name = "J", default_value_t = 0.8)]
    pub threshold: f64,
    /// Words per shingle.
    #[arg(long, value_name = "K", default_value_t = 5)]
    pub shingle: usize,
    /// MinHash values per signature.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub num_perm: usize,
    /// LSH bands [default: the most rows per band that still finds pairs at
    /// the threshold with probability 0.98].
    #[arg(long, value_name = "B")]
    pub bands: Option<usize>,
    /// Exact duplicates (same normalised text) only.
    #[arg(long)]
    pub exact_only: bool,
}

/// Where a prompt is.
#[derive(Debug, Clone)]
struct Doc {
    file: u32,
    line: u64,
    id: Option<String>,
    /// Its distinct normalised text.
    text: u32,
}

/// The LSH buckets: band key → the texts with that band, as linked lists in
/// one array (most buckets hold one text; a `Vec` each would cost an
/// allocation per text and band).
#[derive(Default)]
struct Buckets {
    /// Band key → (newest entry, entries).
    heads: HashMap<u64, (u32, u32), IdBuild>,
    /// (text, next older entry or `u32::MAX`).
    entries: Vec<(u32, u32)>,
}

impl Buckets {
    /// Appends the texts already in `key`'s bucket to `out`, then adds `t`
    /// (unless the bucket is full).
    fn push(&mut self, key: u64, t: u32, out: &mut Vec<u32>) {
        let new = self.entries.len() as u32;
        match self.heads.entry(key) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((new, 1));
                self.entries.push((t, u32::MAX));
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let (head, len) = *o.get();
                let mut e = head;
                while e != u32::MAX {
                    let (text, next) = self.entries[e as usize];
                    out.push(text);
                    e = next;
                }
                if (len as usize) < MAX_BUCKET {
                    *o.get_mut() = (new, len + 1);
                    self.entries.push((t, head));
                }
            }
        }
    }
}

/// A line as pass 1 needs it, made in parallel.
struct Prepared {
    /// 128-bit hash of the normalised text.
    key: u128,
    /// MinHash signature (near duplicates on, and some words).
    sig: Option<Vec<u32>>,
    id: Option<String>,
}

/// The near-duplicate machinery: signatures, buckets, clusters.
struct Near {
    hasher: MinHasher,
    lsh: LshParams,
    threshold: f64,
    shingle: usize,
    /// Signatures of the distinct texts, one after the other.
    sigs: Vec<u32>,
    buckets: Buckets,
    /// Union-find parent of each distinct text; a root is its cluster's
    /// smallest (earliest) text.
    parent: Vec<u32>,
    candidates: Vec<u32>,
}

impl Near {
    fn sig(&self, t: u32) -> &[u32] {
        let n = self.hasher.num_perm();
        &self.sigs[t as usize * n..(t as usize + 1) * n]
    }

    fn find(&mut self, mut t: u32) -> u32 {
        while self.parent[t as usize] != t {
            let up = self.parent[self.parent[t as usize] as usize];
            self.parent[t as usize] = up;
            t = up;
        }
        t
    }

    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            self.parent[hi as usize] = lo;
        }
    }

    /// Adds distinct text `t` with `sig` (`None`: no words, never near
    /// anything); returns how many candidates were verified as near.
    fn add(&mut self, t: u32, sig: Option<Vec<u32>>) -> usize {
        self.parent.push(t);
        let n = self.hasher.num_perm();
        let Some(sig) = sig else {
            self.sigs.extend(std::iter::repeat_n(u32::MAX, n));
            return 0;
        };
        self.sigs.extend_from_slice(&sig);
        self.candidates.clear();
        let mut candidates = std::mem::take(&mut self.candidates);
        for key in self.lsh.band_keys(&sig) {
            self.buckets.push(key, t, &mut candidates);
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut linked = 0;
        for &c in &candidates {
            if self.find(c) == self.find(t) {
                continue;
            }
            if similarity(self.sig(c), &sig) >= self.threshold {
                self.union(c, t);
                linked += 1;
            }
        }
        self.candidates = candidates;
        linked
    }
}

/// A prompt in the report.
#[derive(Serialize)]
struct Member<'a> {
    file: String,
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    similarity: Option<f64>,
}

/// One line of the report.
#[derive(Serialize)]
struct Cluster<'a> {
    kept: Member<'a>,
    dropped: Vec<Member<'a>>,
}

/// Validated options.
fn check_args(args: &DedupArgs) -> Result<()> {
    if !(args.threshold > 0.0 && args.threshold <= 1.0) {
        bail!("--threshold must be in (0, 1], not {}", args.threshold);
    }
    if args.shingle == 0 || args.num_perm == 0 {
        bail!("--shingle and --num-perm must be at least 1");
    }
    if let Some(b) = args.bands {
        if b == 0 || b > args.num_perm {
            bail!("--bands must be between 1 and --num-perm ({})", args.num_perm);
        }
    }
    if args.output.is_some() && args.input.len() > 1 {
        bail!("--output takes the kept lines of one input; use --output-dir with several");
    }
    Ok(())
}

/// The output path of each input.
fn output_paths(args: &DedupArgs) -> Result<Vec<PathBuf>> {
    if let Some(o) = &args.output {
        return Ok(vec![o.clone()]);
    }
    let dir = args
        .output_dir
        .as_ref()
        .context("--output or --output-dir is needed")?;
    let mut out: Vec<PathBuf> = Vec::new();
    for input in &args.input {
        let name = input
            .file_name()
            .with_context(|| format!("{}: not a file name", input.display()))?;
        let path = dir.join(name);
        if out.contains(&path) {
            bail!(
                "two inputs are named {}: their outputs in {} would collide",
                name.to_string_lossy(),
                dir.display()
            );
        }
        out.push(path);
    }
    Ok(out)
}

/// Runs the command; returns its summary table.
pub fn run(args: &DedupArgs, quiet: bool) -> Result<Summary> {
    check_args(args)?;
    let outputs = output_paths(args)?;
    let inputs: Vec<&Path> = args.input.iter().map(PathBuf::as_path).collect();
    let mut all_outputs: Vec<&Path> = outputs.iter().map(PathBuf::as_path).collect();
    all_outputs.extend(args.report.as_deref());
    ensure_distinct(&inputs, &all_outputs)?;
    let started = Instant::now();

    let mut near = (!args.exact_only).then(|| {
        let lsh = match args.bands {
            Some(bands) => LshParams {
                bands,
                rows: args.num_perm / bands,
            },
            None => LshParams::choose(args.num_perm, args.threshold),
        };
        Near {
            hasher: MinHasher::new(args.num_perm, SEED),
            lsh,
            threshold: args.threshold,
            shingle: args.shingle,
            sigs: Vec::new(),
            buckets: Buckets::default(),
            parent: Vec::new(),
            candidates: Vec::new(),
        }
    });
    let mut docs: Vec<Doc> = Vec::new();
    let mut first_doc: Vec<u32> = Vec::new();
    let mut exact: HashMap<u128, u32, IdBuild> = HashMap::default();
    let mut exact_dups = 0u64;
    let mut near_links = 0u64;

    // Pass 1: clusters.
    let total: u64 = args
        .input
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = progress("dedup: reading", total, quiet);
    let mut before = 0;
    for (f, path) in args.input.iter().enumerate() {
        let mut reader = LineReader::open(path)?;
        loop {
            let chunk = reader.chunk(CHUNK)?;
            if chunk.is_empty() {
                break;
            }
            let near_ref = near.as_ref();
            let field = args.field.as_str();
            let prepared: Vec<Result<Prepared>> = chunk
                .par_iter()
                .map(|line| {
                    let at = At {
                        path,
                        line: line.number,
                    };
                    let mut v = parse_fields(line, &[field, "id"], at)?;
                    let text = required_string(v[0].take(), field, at)?;
                    let words = normalize(&text);
                    let t = words.text().as_bytes();
                    let key = (u128::from(hash_bytes(t, SEED)) << 64) | u128::from(hash_bytes(t, !SEED));
                    let sig = near_ref.and_then(|n| {
                        (!words.is_empty())
                            .then(|| n.hasher.signature(&shingles(&words.hashes(SEED), n.shingle)))
                    });
                    Ok(Prepared {
                        key,
                        sig,
                        id: id_string(v[1].as_ref()),
                    })
                })
                .collect();
            for (line, p) in chunk.iter().zip(prepared) {
                let Prepared { key, sig, id } = p?;
                let doc = docs.len() as u32;
                let text = match exact.get(&key) {
                    Some(&t) => {
                        exact_dups += 1;
                        t
                    }
                    None => {
                        let t = first_doc.len() as u32;
                        exact.insert(key, t);
                        first_doc.push(doc);
                        if let Some(n) = near.as_mut() {
                            near_links += n.add(t, sig) as u64;
                        }
                        t
                    }
                };
                docs.push(Doc {
                    file: f as u32,
                    line: line.number,
                    id,
                    text,
                });
            }
            bar.set_position(before + reader.consumed());
            bar.set_message(format!("{} lines, {} distinct", docs.len(), first_doc.len()));
        }
        before += reader.size();
    }
    bar.finish_and_clear();
    drop(exact);

    // Each text's cluster root; a doc is kept when it is its root's first.
    let roots: Vec<u32> = match near.as_mut() {
        Some(n) => (0..first_doc.len() as u32).map(|t| n.find(t)).collect(),
        None => (0..first_doc.len() as u32).collect(),
    };
    let kept_doc = |d: usize| first_doc[roots[docs[d].text as usize] as usize] as usize == d;

    if let Some(path) = &args.report {
        let mut members: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for d in 0..docs.len() {
            if !kept_doc(d) {
                members.entry(roots[docs[d].text as usize]).or_default().push(d);
            }
        }
        let mut report = AtomicOutput::create(path)?;
        let member = |d: usize, root: u32| {
            let doc = &docs[d];
            let (kind, sim) = if d == first_doc[root as usize] as usize {
                (None, None)
            } else if doc.text == root {
                (Some("exact"), Some(1.0))
            } else {
                let n = near.as_ref().expect("near duplicates need signatures");
                let s = similarity(n.sig(doc.text), n.sig(root));
                (Some("near"), Some((s * 1000.0).round() / 1000.0))
            };
            Member {
                file: args.input[doc.file as usize].display().to_string(),
                line: doc.line,
                id: doc.id.as_deref(),
                kind,
                similarity: sim,
            }
        };
        for (root, dropped) in &members {
            report.write_json(&Cluster {
                kept: member(first_doc[*root as usize] as usize, *root),
                dropped: dropped.iter().map(|&d| member(d, *root)).collect(),
            })?;
        }
        report.commit()?;
    }

    // Pass 2: the kept lines.
    let bar = progress("dedup: writing", total, quiet);
    let mut per_file = Vec::new();
    let mut d = 0usize;
    let mut before = 0;
    for (path, out_path) in args.input.iter().zip(&outputs) {
        let mut reader = LineReader::open(path)?;
        let mut out = AtomicOutput::create(out_path)?;
        let mut read = 0u64;
        loop {
            let chunk = reader.chunk(CHUNK)?;
            if chunk.is_empty() {
                break;
            }
            for line in &chunk {
                // The file changed under us if its lines no longer line up.
                if d >= docs.len() || docs[d].line != line.number {
                    bail!("{} changed while it was being deduplicated", path.display());
                }
                if kept_doc(d) {
                    out.write_raw(line)?;
                }
                d += 1;
                read += 1;
            }
            bar.set_position(before + reader.consumed());
        }
        before += reader.size();
        per_file.push((path, read, out.lines()));
        out.commit()?;
    }
    bar.finish_and_clear();

    let read = docs.len() as u64;
    let kept: u64 = per_file.iter().map(|(_, _, k)| k).sum();
    let mut cluster_size = vec![0u32; first_doc.len()];
    for doc in &docs {
        cluster_size[roots[doc.text as usize] as usize] += 1;
    }
    let clusters = cluster_size.iter().filter(|&&n| n > 1).count();
    let mut s = Summary::new(format!(
        "trainer data dedup: {} file(s){}",
        args.input.len(),
        match &near {
            Some(n) => format!(
                " (threshold {}, {}-word shingles, {} perms = {} bands x {} rows)",
                args.threshold, args.shingle, args.num_perm, n.lsh.bands, n.lsh.rows
            ),
            None => " (exact only)".into(),
        }
    ));
    s.row("lines read", read);
    s.row("kept", percent(kept, read));
    s.row("dropped", percent(read - kept, read));
    s.sub("exact duplicates", exact_dups);
    s.sub("near duplicates", read - kept - exact_dups);
    s.row("clusters with duplicates", clusters);
    s.row("distinct texts", first_doc.len());
    if near.is_some() {
        s.sub("near links verified", near_links);
    }
    for (path, r, k) in &per_file {
        s.row(path.display().to_string(), format!("{r} read, {k} kept"));
    }
    s.time(started.elapsed());
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path, inputs: &[&str]) -> DedupArgs {
        DedupArgs {
            input: inputs.iter().map(|n| dir.join(n)).collect(),
            output: None,
            output_dir: Some(dir.join("out")),
            report: Some(dir.join("clusters.jsonl")),
            field: "prompt".into(),
            threshold: 0.7,
            shingle: 3,
            num_perm: 128,
            bands: None,
            exact_only: false,
        }
    }

    fn write(dir: &Path, name: &str, prompts: &[&str]) {
        let text: String = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "{}\n",
                    serde_json::json!({"id": format!("{name}-{i}"), "prompt": p})
                )
            })
            .collect();
        std::fs::write(dir.join(name), text).unwrap();
    }

    const LONG: &str = "A farmer has a rectangular field whose length is three times its width and whose perimeter is 240 meters; find the area of the field in square meters.";

    #[test]
    fn keeps_the_first_of_each_cluster_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let near = LONG.replace("240 meters", "240 metres");
        write(dir.path(), "a.jsonl", &[LONG, "Compute 2+2.", "compute 2 + 2"]);
        write(
            dir.path(),
            "b.jsonl",
            &["What is 17 times 3?", &near, "COMPUTE 2+2!"],
        );
        let s = run(&args(dir.path(), &["a.jsonl", "b.jsonl"]), true).unwrap();
        let a = std::fs::read_to_string(dir.path().join("out/a.jsonl")).unwrap();
        let b = std::fs::read_to_string(dir.path().join("out/b.jsonl")).unwrap();
        assert_eq!(a.lines().count(), 2, "{a}");
        assert!(a.contains("a.jsonl-0") && a.contains("a.jsonl-1"));
        assert_eq!(b.lines().collect::<Vec<_>>().len(), 1, "{b}");
        assert!(b.contains("What is 17"));
        let report: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("clusters.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(report.len(), 2);
        assert_eq!(report[0]["kept"]["id"], "a.jsonl-0");
        assert_eq!(report[0]["dropped"][0]["id"], "b.jsonl-1");
        assert_eq!(report[0]["dropped"][0]["match"], "near");
        assert!(report[0]["dropped"][0]["similarity"].as_f64().unwrap() >= 0.7);
        assert_eq!(report[1]["kept"]["id"], "a.jsonl-1");
        let dropped: Vec<&str> = report[1]["dropped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(dropped, ["a.jsonl-2", "b.jsonl-2"]);
        assert_eq!(report[1]["dropped"][1]["match"], "exact");
        let text = s.render();
        assert!(text.contains("exact duplicates"), "{text}");
    }

    #[test]
    fn exact_only_keeps_near_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let near = LONG.replace("240 meters", "240 metres");
        write(dir.path(), "a.jsonl", &[LONG, &near, LONG]);
        let mut a = args(dir.path(), &["a.jsonl"]);
        a.exact_only = true;
        run(&a, true).unwrap();
        let out = std::fs::read_to_string(dir.path().join("out/a.jsonl")).unwrap();
        assert_eq!(out.lines().count(), 2);
    }

    #[test]
    fn buckets_list_earlier_texts_up_to_the_cap() {
        let mut b = Buckets::default();
        let mut out = Vec::new();
        b.push(7, 0, &mut out);
        b.push(8, 1, &mut out);
        assert!(out.is_empty());
        b.push(7, 2, &mut out);
        assert_eq!(out, [0]);
        out.clear();
        b.push(7, 3, &mut out);
        assert_eq!(out, [2, 0]);
        for t in 4..(MAX_BUCKET as u32 + 10) {
            out.clear();
            b.push(9, t, &mut out);
        }
        // The bucket stopped growing at the cap.
        assert_eq!(out.len(), MAX_BUCKET);
    }

    #[test]
    fn bad_options_and_colliding_outputs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("x")).unwrap();
        write(dir.path(), "a.jsonl", &["p"]);
        write(&dir.path().join("x"), "a.jsonl", &["p"]);
        let a = args(dir.path(), &["a.jsonl", "x/a.jsonl"]);
        assert!(run(&a, true).unwrap_err().to_string().contains("collide"));
        let mut a = args(dir.path(), &["a.jsonl"]);
        a.threshold = 1.5;
        assert!(run(&a, true).is_err());
        let mut a = args(dir.path(), &["a.jsonl"]);
        a.output_dir = None;
        a.output = Some(dir.path().join("a.jsonl"));
        assert!(run(&a, true).unwrap_err().to_string().contains("refusing"));
    }
}
