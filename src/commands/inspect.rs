//! `sshbreak inspect` (lands with its issue).

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::cli::InspectArgs;

pub fn run(_args: &InspectArgs, _ctx: &Ctx) -> Result<ExitCode> {
    super::not_implemented("inspect")
}
