//! `sshbreak audit --verify`: check the hash chain of the issuance log.

use std::process::ExitCode;

use anyhow::Result;

use super::{Ctx, out, usage};
use crate::audit;
use crate::cli::AuditArgs;

pub fn run(args: &AuditArgs, ctx: &Ctx) -> Result<ExitCode> {
    if !args.verify {
        return Err(usage("nothing to do: pass --verify to check the audit log"));
    }
    let n = audit::verify(&ctx.home)?;
    out(format!(
        "{}: {n} entries, hash chain intact\n",
        audit::audit_path(&ctx.home).display()
    ))?;
    Ok(ExitCode::SUCCESS)
}
