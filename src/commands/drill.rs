//! `sshbreak drill` (lands with its issue).

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::cli::DrillArgs;

pub fn run(_args: &DrillArgs, _ctx: &Ctx) -> Result<ExitCode> {
    super::not_implemented("drill")
}
