//! `reward-server run`: one program in the sandbox, its output and verdict.

use crate::util::{have_guest, run};

fn last_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn runs_a_program_with_stdin_and_checks_expected_output() {
    if !have_guest() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("sum.py");
    std::fs::write(
        &program,
        "import sys\nn = int(input())\nprint(n * (n + 1) // 2)\nprint('dbg', file=sys.stderr)\n",
    )
    .unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "100\n").unwrap();
    let good = dir.path().join("good.txt");
    std::fs::write(&good, "5050  \n\n").unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "5051\n").unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();

    let out = run(&["run", &path(&program), "--stdin", &path(&input)], "");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5050\n");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("dbg\n"));
    assert!(
        last_line(&out.stderr).contains(": finished"),
        "{}",
        last_line(&out.stderr)
    );

    let out = run(
        &[
            "run",
            &path(&program),
            "--stdin",
            &path(&input),
            "--expect",
            &path(&good),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(last_line(&out.stderr).contains(": correct"));

    let out = run(
        &[
            "run",
            &path(&program),
            "--stdin",
            &path(&input),
            "--expect",
            &path(&bad),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(last_line(&out.stderr).contains(": wrong_answer"));
}

#[test]
fn reports_how_a_failing_program_ended() {
    if !have_guest() {
        return;
    }
    let cases: &[(&str, &[&str], &str)] = &[
        ("while True: pass\n", &["--time-limit", "0.2"], "time_limit"),
        (
            "x = bytearray(300 << 20)\n",
            &["--memory-limit", "128"],
            "memory_limit",
        ),
        ("raise KeyError('k')\n", &[], "runtime_error"),
        ("print(1\n", &[], "runtime_error"),
        ("import sys\nsys.exit(4)\n", &[], "runtime_error"),
    ];
    for (program, options, verdict) in cases {
        let mut args = vec!["run", "-"];
        args.extend_from_slice(options);
        let out = run(&args, program);
        assert_eq!(out.status.code(), Some(1), "{program}");
        let line = last_line(&out.stderr);
        assert!(line.contains(&format!(": {verdict}")), "{program}: {line}");
    }
}

#[test]
fn bad_options_and_missing_files_are_clear_errors() {
    let out = run(&["run", "/nonexistent/prog.py"], "");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/prog.py"));
    let out = run(&["run", "-", "--time-limit", "0"], "pass");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--time-limit"));
    let out = run(&["run", "-", "--stdin", "-"], "pass");
    assert_eq!(out.status.code(), Some(2));
}
