//! Finding the program in a model's response: the last ```python fenced
//! block, else the last fenced block of any language, else nothing.

/// The program in `response`, or `None` when it has no fenced block.
pub fn extract_code(response: &str) -> Option<&str> {
    let mut last_python = None;
    let mut last_any = None;
    let mut rest = response;
    let mut offset = 0;
    while let Some(open) = rest.find("```") {
        let after_fence = &rest[open + 3..];
        let info_end = after_fence.find('\n').unwrap_or(after_fence.len());
        let info = after_fence[..info_end].trim().to_ascii_lowercase();
        let body_start = open + 3 + (info_end + 1).min(after_fence.len());
        let body = &rest[body_start..];
        let Some(close) = body.find("```") else { break };
        let code = &response[offset + body_start..offset + body_start + close];
        if matches!(info.as_str(), "python" | "py" | "python3") {
            last_python = Some(code);
        }
        last_any = Some(code);
        let consumed = body_start + close + 3;
        offset += consumed;
        rest = &rest[consumed..];
    }
    last_python.or(last_any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_python_block_wins() {
        let r = "Idea:\n```python\nprint(1)\n```\nBetter:\n```python\nprint(2)\n```\nDone.";
        assert_eq!(extract_code(r), Some("print(2)\n"));
        let r = "```python\nprint(1)\n```\nand a shell line:\n```bash\nls\n```";
        assert_eq!(extract_code(r), Some("print(1)\n"));
        assert_eq!(extract_code("```\nx = 1\n```"), Some("x = 1\n"));
        assert_eq!(extract_code("```Python3\nx = 1\n```"), Some("x = 1\n"));
    }

    #[test]
    fn no_fence_or_unclosed_fence_is_nothing() {
        assert_eq!(extract_code("print(1)"), None);
        assert_eq!(extract_code("```python\nprint(1)\n"), None);
    }
}
