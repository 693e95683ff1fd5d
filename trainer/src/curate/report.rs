//! What the `trainer data` commands print at the end: a summary table on
//! stdout (their progress bars are [`crate::progress::bytes`]).

use std::fmt::Write as _;
use std::time::Duration;

/// A two-column summary: a title, then rows of a label and a value (rows
/// may be indented under the one before).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    title: String,
    rows: Vec<(usize, String, String)>,
}

impl Summary {
    /// An empty table headed `title`.
    pub fn new(title: impl Into<String>) -> Summary {
        Summary {
            title: title.into(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, label: impl Into<String>, value: impl ToString) -> &mut Summary {
        self.rows.push((0, label.into(), value.to_string()));
        self
    }

    /// Adds a row indented under the previous one.
    pub fn sub(&mut self, label: impl Into<String>, value: impl ToString) -> &mut Summary {
        self.rows.push((1, label.into(), value.to_string()));
        self
    }

    /// Adds the elapsed time.
    pub fn time(&mut self, elapsed: Duration) -> &mut Summary {
        self.row("time", format!("{:.2} s", elapsed.as_secs_f64()))
    }

    /// The table as text: labels left-aligned, values right-aligned.
    pub fn render(&self) -> String {
        let label_w = self
            .rows
            .iter()
            .map(|(d, l, _)| d * 2 + l.chars().count())
            .max()
            .unwrap_or(0);
        let value_w = self
            .rows
            .iter()
            .map(|(_, _, v)| v.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.title);
        let rule = "-".repeat((label_w + value_w + 4).max(self.title.chars().count()));
        let _ = writeln!(out, "{rule}");
        for (depth, label, value) in &self.rows {
            let indent = "  ".repeat(*depth);
            let pad = label_w - depth * 2;
            let _ = writeln!(out, "  {indent}{label:<pad$}  {value:>value_w$}");
        }
        out
    }

    /// Prints the table to stdout.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// `part` out of `whole` as a percentage, for table rows.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        format!("{part}")
    } else {
        format!("{part} ({:.1}%)", 100.0 * part as f64 / whole as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_aligned_rows() {
        let mut s = Summary::new("trainer data dedup");
        s.row("lines read", 1200)
            .row("dropped", percent(200, 1200))
            .sub("exact", 150);
        let text = s.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "trainer data dedup");
        assert!(lines[1].chars().all(|c| c == '-'));
        assert_eq!(lines[2], "  lines read         1200");
        assert_eq!(lines[3], "  dropped     200 (16.7%)");
        assert_eq!(lines[4], "    exact             150");
        assert_eq!(percent(3, 0), "3");
    }
}
