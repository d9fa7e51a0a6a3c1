//! Everything a person sees on stderr while a command runs: the PIN prompt, "touch your key",
//! warnings. Results go to stdout from the commands themselves.

use std::io::Write;
use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result, bail};

use crate::token::Pin;

/// Environment variable naming a file that holds the PIN, for automation. Never a flag: argv is
/// visible to every user on the machine.
pub const PIN_FILE_ENV: &str = "SSHBREAK_PIN_FILE";

/// Print a progress or status line on stderr.
pub fn status(msg: impl AsRef<str>) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", msg.as_ref());
}

/// Print a warning on stderr.
pub fn warn(msg: impl AsRef<str>) {
    status(format!("sshbreak: warning: {}", msg.as_ref()));
}

/// Shown just before a call that blocks until the key is touched.
pub fn touch_prompt() {
    status("Touch your security key…");
}

static SOFT_WARNING: Once = Once::new();

/// The soft token is for tests and the demo; say so once per process.
pub fn warn_once_soft_token(path: &Path) {
    SOFT_WARNING.call_once(|| {
        warn(format!(
            "using the software token {} — it is NOT a hardware key; use it for tests and demos only",
            path.display()
        ))
    });
}

/// Read a PIN: from the file named by `SSHBREAK_PIN_FILE` when set, otherwise from the terminal
/// without echo. `what` completes "Enter the PIN for …".
pub fn read_pin(what: &str) -> Result<Pin> {
    if let Some(path) = std::env::var_os(PIN_FILE_ENV) {
        return read_pin_file(Path::new(&path), PIN_FILE_ENV);
    }
    prompt_secret(&format!("Enter the PIN for {what}: ")).and_then(|p| Ok(Pin::new(p)?))
}

/// Read a new PIN twice from the terminal, or once from the file named by `SSHBREAK_NEW_PIN_FILE`
/// (automation; separate from `SSHBREAK_PIN_FILE` so that changing a PIN can be scripted).
pub fn read_new_pin() -> Result<Pin> {
    if let Some(path) = std::env::var_os("SSHBREAK_NEW_PIN_FILE") {
        return read_pin_file(Path::new(&path), "SSHBREAK_NEW_PIN_FILE");
    }
    let first = Pin::new(prompt_secret("New PIN (4-63 characters): ")?)?;
    let second = prompt_secret("Repeat the new PIN: ")?;
    if first.expose() != second {
        bail!("the two PINs differ; nothing was changed");
    }
    Ok(first)
}

/// A PIN from a file: the first line, without its line ending. A file other users can read is
/// still used (the operator chose it) but named, since anyone who can read it can use the key.
fn read_pin_file(path: &Path, var: &str) -> Result<Pin> {
    use std::os::unix::fs::PermissionsExt;
    let bytes = crate::fsx::read_small(path)
        .with_context(|| format!("cannot read the PIN file named by {var}"))?;
    if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
        warn(format!(
            "the PIN file {} is readable by other users; `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the PIN file {} is not UTF-8 text", path.display()))?;
    let pin = text.lines().next().unwrap_or_default();
    Ok(Pin::new(pin)?)
}

fn prompt_secret(prompt: &str) -> Result<String> {
    // rpassword reads from /dev/tty, so a redirected stdin does not matter; without a terminal
    // at all (CI, cron) say how to provide the PIN instead of failing obscurely.
    rpassword::prompt_password(prompt).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the PIN from the terminal ({e}); set {PIN_FILE_ENV} to a file holding it"
        )
    })
}

/// Format a duration in seconds as "7m12s", "3h", "2d4h" — for status lines.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    let parts = [(d, "d"), (h, "h"), (m, "m"), (s, "s")];
    let first = parts.iter().position(|(v, _)| *v != 0);
    match first {
        None => "0s".into(),
        Some(i) => parts[i..(i + 2).min(4)]
            .iter()
            .filter(|(v, _)| *v != 0)
            .map(|(v, u)| format!("{v}{u}"))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(432), "7m12s");
        assert_eq!(human_duration(3 * 3600), "3h");
        assert_eq!(human_duration(2 * 86_400 + 4 * 3600 + 59), "2d4h");
        assert_eq!(human_duration(61), "1m1s");
    }
}
