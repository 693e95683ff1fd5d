//! Picking a run up again from its output directory: the `step-N`
//! checkpoints SFT and RL write, which one to resume from, pruning old ones,
//! and dropping log lines written after the checkpoint being resumed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The checkpoint a run starts from: the newest of `checkpoints` (those
/// under `root`) with `resume`, none on a fresh start. Resuming without
/// checkpoints, or starting afresh over them, is refused.
pub fn resume_point(root: &Path, checkpoints: &[(u64, PathBuf)], resume: bool) -> Result<Option<PathBuf>> {
    match (resume, checkpoints.last()) {
        (true, Some((_, dir))) => Ok(Some(dir.clone())),
        (true, None) => anyhow::bail!("--resume: no checkpoints in {}", root.display()),
        (false, Some((_, dir))) => anyhow::bail!(
            "{} already has checkpoints (newest {}); pass --resume to continue or choose another output.dir",
            root.display(),
            dir.display()
        ),
        (false, None) => Ok(None),
    }
}

/// Deletes all but the newest `keep` of `checkpoints` (oldest first; 0 keeps all).
pub fn prune_checkpoints(checkpoints: &[(u64, PathBuf)], keep: usize) -> Result<()> {
    if keep > 0 {
        for (_, old) in checkpoints.iter().take(checkpoints.len().saturating_sub(keep)) {
            std::fs::remove_dir_all(old)
                .with_context(|| format!("removing old checkpoint {}", old.display()))?;
        }
    }
    Ok(())
}

/// `(step, dir)` of the `step-N` directories under `root` that hold
/// `marker` (the file a run writes last into a checkpoint), oldest first.
pub fn list_step_dirs(root: &Path, marker: &str) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    if root.is_dir() {
        for entry in std::fs::read_dir(root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse::<u64>().ok()) {
                if entry.path().join(marker).exists() {
                    found.push((step, entry.path()));
                }
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Drops the lines of a JSONL log (metrics, evals) whose `"step"` is past
/// `step`: written after the checkpoint being resumed, they would repeat.
/// Lines without a step are dropped too. A missing file is left missing.
pub fn truncate_after_step(path: &Path, step: u64) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, kept).with_context(|| format!("rewriting {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_point_refuses_the_ambiguous_cases() {
        let root = Path::new("/runs/x");
        let ckpts = vec![(10, root.join("step-000010")), (20, root.join("step-000020"))];
        assert_eq!(
            resume_point(root, &ckpts, true).unwrap(),
            Some(root.join("step-000020"))
        );
        assert_eq!(resume_point(root, &[], false).unwrap(), None);
        assert!(resume_point(root, &[], true)
            .unwrap_err()
            .to_string()
            .contains("no checkpoints"));
        assert!(resume_point(root, &ckpts, false)
            .unwrap_err()
            .to_string()
            .contains("--resume"));
    }

    #[test]
    fn step_dirs_need_their_marker_and_prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for (step, marked) in [(3, true), (1, true), (2, false), (12, true)] {
            let d = dir.path().join(format!("step-{step:06}"));
            std::fs::create_dir(&d).unwrap();
            if marked {
                std::fs::write(d.join("state.json"), "{}").unwrap();
            }
        }
        std::fs::create_dir(dir.path().join("other")).unwrap();
        let found = list_step_dirs(dir.path(), "state.json").unwrap();
        assert_eq!(found.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 3, 12]);
        prune_checkpoints(&found, 2).unwrap();
        let left = list_step_dirs(dir.path(), "state.json").unwrap();
        assert_eq!(left.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 12]);
        prune_checkpoints(&left, 0).unwrap();
        assert_eq!(list_step_dirs(dir.path(), "state.json").unwrap().len(), 2);
    }

    #[test]
    fn truncate_keeps_lines_up_to_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(
            &path,
            "{\"step\":1}\n{\"step\":2,\"x\":1}\n{\"step\":3}\nnot json\n{\"no\":1}\n",
        )
        .unwrap();
        truncate_after_step(&path, 2).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"step\":1}\n{\"step\":2,\"x\":1}\n"
        );
        truncate_after_step(&dir.path().join("absent.jsonl"), 2).unwrap();
        assert!(!dir.path().join("absent.jsonl").exists());
    }
}
