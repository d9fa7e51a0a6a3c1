//! `sshbreak demo` (lands with its issue).

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::cli::DemoArgs;

pub fn run(_args: &DemoArgs, _ctx: &Ctx) -> Result<ExitCode> {
    super::not_implemented("demo")
}
