//! One module per subcommand. Each `run` orchestrates: it calls the pure planners (`policy`,
//! `host`, `inspect`) and the effects (`token`, `ca`, `fsx`, ssh processes) and prints results.

pub mod audit;
pub mod connect;
pub mod demo;
pub mod drill;
pub mod enroll_host;
pub mod init_ca;
pub mod inspect;
pub mod issue;
pub mod token;

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{Cli, Command};
use crate::token::{SecurityKey, TokenError, TokenSpec};

/// What every command gets: where the home is and which token was chosen.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub home: PathBuf,
    pub token: TokenSpec,
}

impl Ctx {
    pub fn from_cli(cli: &Cli) -> Result<Ctx> {
        let home = match &cli.home {
            Some(h) => h.clone(),
            None => default_home()?,
        };
        Ok(Ctx {
            home,
            token: cli.token.clone(),
        })
    }

    /// Create the home (0700) if needed; commands that write call this first.
    pub fn ensure_home(&self) -> Result<()> {
        crate::fsx::ensure_private_dir(&self.home)
    }

    pub fn open_token(&self) -> Result<Box<dyn SecurityKey>> {
        crate::token::open(&self.token).map_err(anyhow::Error::from)
    }
}

fn default_home() -> Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("HOME is not set; pass --home DIR or set SSHBREAK_HOME")?;
    Ok(PathBuf::from(home).join(".sshbreak"))
}

/// A mistake in how the command was called: exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

/// Build a usage error (exit status 2).
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// An error with a next step printed on its own line.
#[derive(Debug)]
pub struct Hint {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for Hint {}

/// Build an error with a hint line.
pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    Hint {
        message: message.into(),
        hint: hint.into(),
    }
    .into()
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx::from_cli(&cli)?;
    match cli.command {
        Command::InitCa(args) => init_ca::run(&args, &ctx),
        Command::EnrollHost(args) => enroll_host::run(&args, &ctx),
        Command::Issue(args) => issue::run(&args, &ctx),
        Command::Inspect(args) => inspect::run(&args, &ctx),
        Command::Connect(args) => connect::run(&args, &ctx),
        Command::Demo(args) => demo::run(&args, &ctx),
        Command::Drill(args) => drill::run(&args, &ctx),
        Command::Token(cmd) => token::run(&cmd, &ctx),
        Command::Audit(args) => audit::run(&args, &ctx),
    }
}

/// Print an error chain as one line (plus a hint line when there is one) and pick the exit code:
/// 2 for usage errors, 1 otherwise; a closed stdout (`sshbreak … | head`) exits quietly.
pub fn report(err: &anyhow::Error) -> ExitCode {
    let broken_pipe = err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    let hint = err.chain().find_map(|e| {
        if let Some(h) = e.downcast_ref::<Hint>() {
            Some(h.hint.clone())
        } else {
            e.downcast_ref::<TokenError>()
                .and_then(|t| t.hint().map(str::to_string))
        }
    });
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "sshbreak: {err:#}");
    if let Some(hint) = hint {
        let _ = writeln!(stderr, "  hint: {hint}");
    }
    if err.chain().any(|e| e.is::<UsageError>()) {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// Write to stdout, propagating errors (a closed pipe ends the command quietly, see `report`).
pub fn out(text: impl AsRef<str>) -> Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_ref().as_bytes())?;
    stdout.flush()?;
    Ok(())
}
