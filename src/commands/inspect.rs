//! `sshbreak inspect`: the I/O around [`crate::inspect`] — read the inputs (files or stdin, at most
//! 1 MiB each), pick the trust source (`--ca FILE`, else `<home>/trusted-ca.pub` when it exists,
//! else none), read the clock once, print text or JSON, and choose the exit status: 0 all inputs
//! good, 1 one of them is not, 2 a usage or I/O error (an unreadable input is reported on stderr and
//! the others are still inspected). No token is opened: inspecting is quiet and instant.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use ssh_key::PublicKey;

use super::{Ctx, out, usage};
use crate::cli::InspectArgs;
use crate::inspect::{self, Inspection, STDIN_NAME};
use crate::{ca, fsx};

/// The same bound `fsx::read_small` puts on files: no certificate, key or bundle comes near it.
const STDIN_LIMIT: u64 = 1 << 20;

pub fn run(args: &InspectArgs, ctx: &Ctx) -> Result<ExitCode> {
    let inputs: Vec<PathBuf> = if args.files.is_empty() {
        // Waiting silently for a paste nobody knows is expected looks like a hang; an explicit
        // `-` still reads the terminal.
        if std::io::stdin().is_terminal() {
            return Err(usage(
                "no input: give a certificate, key or bundle FILE, or pipe one in (`-` reads the terminal)",
            ));
        }
        vec![PathBuf::from("-")]
    } else {
        args.files.clone()
    };
    if inputs.iter().filter(|p| is_stdin(p)).count() > 1 {
        return Err(usage(
            "`-` (standard input) can be given only once; save it to a file to inspect it twice",
        ));
    }
    let trusted = trust_source(args, ctx)?;
    // One clock reading for the whole run, so every input is judged at the same instant.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    let mut results: Vec<Inspection> = Vec::with_capacity(inputs.len());
    let mut unreadable = false;
    for (n, path) in inputs.iter().enumerate() {
        let (name, bytes) = if is_stdin(path) {
            (STDIN_NAME.to_string(), read_stdin())
        } else {
            (path.display().to_string(), fsx::read_small(path))
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                // Keep going: the other inputs' results are still worth having.
                crate::ui::status(format!("sshbreak: {e:#}"));
                unreadable = true;
                continue;
            }
        };
        let result = inspect::inspect(&name, &bytes, trusted.as_deref(), now);
        if !args.json {
            let sep = if n > 0 && !results.is_empty() {
                "\n"
            } else {
                ""
            };
            out(format!("{sep}{}", result.to_text()))?;
        }
        results.push(result);
    }
    if args.json {
        out(format!("{}\n", inspect::to_json(&results)?))?;
    }

    Ok(if unreadable {
        ExitCode::from(2)
    } else if results.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .take(STDIN_LIMIT + 1)
        .read_to_end(&mut buf)
        .context("cannot read standard input")?;
    if buf.len() as u64 > STDIN_LIMIT {
        bail!("standard input is larger than 1 MiB; is it the right data?");
    }
    Ok(buf)
}

/// The trusted CA keys: `--ca FILE`, else the home's bundle when there is one, else none (trust
/// is then not checked). A trust source that exists but cannot be read is a usage error: silently
/// checking nothing would turn "untrusted" into "fine".
fn trust_source(args: &InspectArgs, ctx: &Ctx) -> Result<Option<Vec<PublicKey>>> {
    if let Some(path) = &args.ca {
        let keys = ca::read_bundle(path).map_err(|e| usage(format!("--ca: {e:#}")))?;
        return Ok(Some(keys));
    }
    let path = ca::bundle_path(&ctx.home);
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        _ => ca::read_bundle(&path).map(Some).map_err(|e| {
            usage(format!(
                "{e:#} (the default trust bundle; fix it, or pass --ca FILE)"
            ))
        }),
    }
}
