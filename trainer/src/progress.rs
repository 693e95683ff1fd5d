//! Progress bars on stderr for the long commands: training steps (SFT, RL
//! stages), bytes of input (`trainer data`) and samples (`trainer generate`).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `total` training steps, `done` of them already behind (a
/// resumed run), labelled with `prefix` when given; drawn only when
/// `visible` (and indicatif draws nothing when stderr is not a terminal).
pub fn steps(prefix: Option<&str>, total: u64, done: u64, visible: bool) -> ProgressBar {
    let template = match prefix {
        Some(_) => "{prefix} {bar:30} {pos}/{len} steps | {msg} | ETA {eta}",
        None => "{bar:30} {pos}/{len} steps | {msg} | ETA {eta}",
    };
    let bar = new(total, template, visible);
    if let Some(p) = prefix {
        bar.set_prefix(p.to_string());
    }
    bar.set_position(done);
    bar
}

/// A bar over `total` bytes of input, labelled `what`; hidden with `quiet`.
pub fn bytes(what: &str, total: u64, quiet: bool) -> ProgressBar {
    let bar = new(
        total,
        "{prefix} {bar:30} {bytes}/{total_bytes} | {msg} | ETA {eta}",
        !quiet,
    );
    bar.set_prefix(what.to_string());
    bar
}

/// A bar over `total` items counted in `unit`, labelled `what`; drawn only when `visible`.
pub fn items(what: &str, total: u64, unit: &str, visible: bool) -> ProgressBar {
    let template = format!("{{prefix}} {{bar:30}} {{pos}}/{{len}} {unit} | ETA {{eta}}");
    let bar = new(total, &template, visible);
    bar.set_prefix(what.to_string());
    bar
}

fn new(total: u64, template: &str, visible: bool) -> ProgressBar {
    let target = if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
    bar
}
