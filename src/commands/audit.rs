//! `sshbreak audit` (lands with its issue).

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::cli::AuditArgs;

pub fn run(_args: &AuditArgs, _ctx: &Ctx) -> Result<ExitCode> {
    super::not_implemented("audit")
}
