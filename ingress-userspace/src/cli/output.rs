//! What the one-shot subcommands print on stdout.

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout and flushes it. A reader that went away (`explain | grep -m1`,
/// `migrate | head`) is the end of the output, not an error: `print!` would panic on the
/// `EPIPE` (Rust ignores SIGPIPE), so every subcommand prints through here.
///
/// Errors: any other write error, e.g. a full disk behind a redirect.
pub fn emit(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// [`emit`] of `value` as pretty JSON and a newline.
///
/// Errors: encoding (a map with non-string keys) or writing.
pub fn emit_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut text = serde_json::to_string_pretty(value).context("encoding JSON")?;
    text.push('\n');
    emit(&text).context("writing to stdout")
}
