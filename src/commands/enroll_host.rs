//! `sshbreak enroll-host` (lands with its issue).

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::cli::EnrollHostArgs;

pub fn run(_args: &EnrollHostArgs, _ctx: &Ctx) -> Result<ExitCode> {
    super::not_implemented("enroll-host")
}
