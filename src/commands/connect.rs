//! `sshbreak connect` (lands with its issue).

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::cli::ConnectArgs;

pub fn run(_args: &ConnectArgs, _ctx: &Ctx) -> Result<ExitCode> {
    super::not_implemented("connect")
}
