//! `sshbreak issue` (lands with its issue).

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::cli::IssueArgs;

pub fn run(_args: &IssueArgs, _ctx: &Ctx) -> Result<ExitCode> {
    super::not_implemented("issue")
}
