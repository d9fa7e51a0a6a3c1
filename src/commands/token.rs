//! `sshbreak token`: list security keys and set their PIN.

use std::process::ExitCode;

use anyhow::Result;

use super::{Ctx, out};
use crate::cli::TokenCommand;
use crate::token::{SecurityKey, TokenError, TokenInfo, TokenSpec, hid};
use crate::ui;

pub fn run(cmd: &TokenCommand, ctx: &Ctx) -> Result<ExitCode> {
    match cmd {
        TokenCommand::List { json } => list(ctx, *json),
        TokenCommand::SetPin => set_pin(ctx),
    }
}

fn list(ctx: &Ctx, json: bool) -> Result<ExitCode> {
    let infos = match &ctx.token {
        // With the default spec, list every key plugged in: this is where a user goes when the
        // "several keys" error sends them to pick one with --token hid:<path>.
        TokenSpec::Hid => {
            let devices = hid::devices()?;
            if devices.is_empty() {
                return Err(TokenError::NoDevice.into());
            }
            devices
                .iter()
                .map(|d| hid::HidToken::open(Some(&d.path)).and_then(|t| t.info()))
                .collect::<Result<Vec<_>, _>>()?
        }
        _ => vec![ctx.open_token()?.info()?],
    };
    if json {
        out(format!("{}\n", serde_json::to_string_pretty(&infos)?))?;
    } else {
        out(infos.iter().map(render).collect::<Vec<_>>().join("\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn render(info: &TokenInfo) -> String {
    let yes_no = |b: Option<bool>| match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unsupported",
    };
    let mut s = format!("{}\n", info.description);
    s += &format!("  path:              {}\n", info.path);
    s += &format!("  aaguid:            {}\n", info.aaguid);
    if let Some(fw) = &info.firmware {
        s += &format!("  firmware:          {fw}\n");
    }
    s += &format!("  versions:          {}\n", info.versions.join(", "));
    s += &format!("  PIN set:           {}\n", yes_no(info.pin_set));
    if let Some(r) = info.pin_retries {
        s += &format!("  PIN retries left:  {r}\n");
    }
    if let Some(n) = info.remaining_resident {
        s += &format!("  free resident slots: {n}\n");
    }
    s += &format!(
        "  credProtect:       {}\n  credential mgmt:   {}\n",
        yes_no(Some(info.cred_protect)),
        yes_no(Some(info.cred_mgmt))
    );
    s
}

fn set_pin(ctx: &Ctx) -> Result<ExitCode> {
    let token = ctx.open_token()?;
    let info = token.info()?;
    let current = match info.pin_set {
        Some(true) => Some(ui::read_pin(&format!(
            "{} (current PIN)",
            token.describe()
        ))?),
        Some(false) => None,
        None => anyhow::bail!("{} does not support a PIN", token.describe()),
    };
    let new = ui::read_new_pin()?;
    token.set_pin(current.as_ref(), &new)?;
    ui::status(if current.is_some() {
        "PIN changed."
    } else {
        "PIN set. Keep it with the key's safe-deposit instructions: 8 wrong PINs erase access for good."
    });
    Ok(ExitCode::SUCCESS)
}
