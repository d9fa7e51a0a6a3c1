//! `sshbreak init-ca`: create the CA credential on a security key (or recover it from the key),
//! write its handle file, and add its public key to the trust bundle.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use ssh_key::{HashAlg, PublicKey};

use super::{Ctx, hinted, out, usage};
use crate::ca::{self, CaHandle};
use crate::cli::InitCaArgs;
use crate::fsx;
use crate::token::{
    CA_USER_ID, CA_USER_NAME, CaCredential, CreateRequest, Pin, SecurityKey, TokenError,
};
use crate::ui;

pub fn run(args: &InitCaArgs, ctx: &Ctx) -> Result<ExitCode> {
    check_application(&args.application)?;
    if let Some(name) = &args.name {
        ca::check_name(name)?;
    }
    ctx.ensure_home()?;
    let handles = ca::load_handles(&ctx.home)?;
    // Decide the name before the key is asked anything: a clash must not cost a PIN entry.
    let new_name = if args.recover {
        None
    } else {
        Some(new_name(args, &handles)?)
    };
    let token = ctx.open_token()?;
    let token = token.as_ref();

    let pin = ui::read_pin(&token.describe())?;
    // The PIN is needed below anyway; asking for the key's resident credentials (credential
    // management) needs no touch and, unlike a getAssertion, leaves the signature counter alone.
    let existing = existing_ca(token, &args.application, &pin)?;

    let (cred, name, created) = if args.recover {
        let cred = existing.ok_or_else(|| {
            hinted(
                format!(
                    "{} holds no sshbreak CA for {}",
                    token.describe(),
                    args.application
                ),
                "plug in the key that holds the CA, or check --application",
            )
        })?;
        let name = recovered_name(args, &handles, &cred)?;
        (cred, name, false)
    } else {
        let name = new_name.unwrap_or_default();
        if let Some(old) = &existing
            && !args.force
        {
            return Err(already_on_key(token, old, &handles));
        }
        let req = CreateRequest {
            application: args.application.clone(),
            user_id: CA_USER_ID.to_vec(),
            user_name: CA_USER_NAME.into(),
            verify_required: args.verify_required,
        };
        ui::status(format!(
            "Creating the CA credential {} on {}…",
            args.application,
            token.describe()
        ));
        let cred = token.create_resident(&req, &pin)?;
        if let Some(old) = existing {
            // The old credential is gone from the key: its bundle line would trust nothing.
            if let Ok(old_key) = old.key_data() {
                ca::remove_from_bundle(&ca::bundle_path(&ctx.home), &old_key)?;
            }
        }
        (cred, name, true)
    };

    let comment = format!(
        "sshbreak-ca:{name} on {} [{}] {}",
        token.describe(),
        args.application,
        crate::timefmt::date(super::issue::unix_now()?)
    );
    let handle_path = ca::ca_dir(&ctx.home).join(&name);
    let handle_text = ca::handle_file(&cred, &comment)?;
    fsx::ensure_private_dir(&ca::ca_dir(&ctx.home))?;
    // A recovered or forced handle replaces the file of the same name; a new CA never silently does.
    fsx::write_file(
        &handle_path,
        &handle_text,
        fsx::PRIVATE,
        args.recover || args.force,
    )
    .map_err(|e| {
        hinted(
            format!("{e:#}"),
            "choose another --name, or remove the old handle if it is no longer needed",
        )
    })?;
    let public = PublicKey::new(cred.key_data()?, comment);
    let pub_path = pub_path(&handle_path);
    fsx::write_atomic(&pub_path, public.to_openssh()?.as_bytes(), fsx::PUBLIC)?;
    let bundle = ca::bundle_path(&ctx.home);
    let added = ca::add_to_bundle(&bundle, &public)?;

    let fp = public.fingerprint(HashAlg::Sha256);
    let verb = if created { "Created" } else { "Recovered" };
    out(format!(
        "{verb} CA `{name}` ({}) on {}\n  fingerprint: {fp}\n  handle:      {}\n  public key:  {}\n  bundle:      {}{}\n",
        args.application,
        token.describe(),
        handle_path.display(),
        pub_path.display(),
        bundle.display(),
        if added {
            " (added)"
        } else {
            " (already listed)"
        },
    ))?;
    let next = if name == "primary" {
        "Next: keep a backup — `sshbreak init-ca --backup` with a second key (store it in a different safe) —\nthen make hosts trust the bundle: `sshbreak enroll-host root@HOST` (or `--local` on the host)."
    } else {
        "Next: re-enroll hosts so they trust the updated bundle: `sshbreak enroll-host root@HOST`."
    };
    ui::status(next);
    Ok(ExitCode::SUCCESS)
}

fn check_application(app: &str) -> Result<()> {
    let Some(rest) = app.strip_prefix("ssh:") else {
        return Err(usage(format!(
            "application `{app}` must start with `ssh:` (OpenSSH only accepts such applications)"
        )));
    };
    if rest.is_empty() {
        return Err(usage(
            "application `ssh:` is the default of `ssh-keygen -O resident`: a CA there would be \
             replaced by the next ssh-keygen run; use ssh:NAME (default ssh:sshbreak)",
        ));
    }
    if !rest.chars().all(|c| c.is_ascii_graphic()) || app.len() > 64 {
        return Err(usage(format!(
            "application `{app}` must be printable ASCII without spaces, at most 64 characters"
        )));
    }
    Ok(())
}

/// The sshbreak CA credential for `application` on the key, if there is one.
fn existing_ca(
    token: &dyn SecurityKey,
    application: &str,
    pin: &Pin,
) -> Result<Option<CaCredential>> {
    match token.list_resident(pin) {
        Ok(list) => Ok(list
            .into_iter()
            .find(|c| c.application == application && c.user_id == CA_USER_ID)),
        Err(TokenError::Unsupported(_)) => {
            // Keys without credential management: a user-verified lookup without an allow list
            // still reveals credProtect-2 credentials, but not their public key.
            let found = token.find_credentials(application, &[], Some(pin))?;
            if found
                .iter()
                .any(|f| f.user_id.as_deref().is_none_or(|u| u == CA_USER_ID))
            {
                bail!(
                    "{} already holds an sshbreak CA for {application}, and it cannot list its \
                     credentials to recover it; pass --force to replace it",
                    token.describe()
                );
            }
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn already_on_key(
    token: &dyn SecurityKey,
    old: &CaCredential,
    handles: &[CaHandle],
) -> anyhow::Error {
    let fp = old
        .key_data()
        .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
        .unwrap_or_default();
    let local = handles
        .iter()
        .find(|h| old.key_data().is_ok_and(|k| &k == h.public.key_data()));
    let hint = match local {
        Some(h) => format!(
            "this CA is already set up here as `{}`; nothing to do. To replace it for good \
             (hosts that trust only it lose access), add --force",
            h.name
        ),
        None => "if its handle file was lost, run `sshbreak init-ca --recover`; to replace it for \
                 good (hosts that trust only it lose access), add --force"
            .to_string(),
    };
    hinted(
        format!(
            "{} already holds an sshbreak CA for {} ({fp}); nothing was changed",
            token.describe(),
            old.application
        ),
        hint,
    )
}

/// Name for a newly created CA: `primary`, or the first free `backup-N` with --backup.
fn new_name(args: &InitCaArgs, handles: &[CaHandle]) -> Result<String> {
    let taken = |n: &str| handles.iter().any(|h| h.name == n);
    if args.backup {
        if handles.is_empty() {
            return Err(hinted(
                "there is no primary CA in this home to back up",
                "run `sshbreak init-ca` with the primary key first",
            ));
        }
        if let Some(n) = &args.name {
            if taken(n) {
                return Err(hinted(
                    format!("a CA named `{n}` already exists in this home; nothing was changed"),
                    "choose another --name for the backup",
                ));
            }
            return Ok(n.clone());
        }
        return Ok((1..)
            .map(|i| format!("backup-{i}"))
            .find(|n| !taken(n))
            .unwrap_or_default());
    }
    let name = args.name.clone().unwrap_or_else(|| "primary".into());
    if taken(&name) && !args.force {
        return Err(hinted(
            format!("a CA named `{name}` already exists in this home"),
            "to add a second key to the bundle use --backup; for a separate CA use another --home",
        ));
    }
    Ok(name)
}

/// Name for a recovered CA: the handle that already holds this key, else `primary` when free,
/// else the next `backup-N`.
fn recovered_name(args: &InitCaArgs, handles: &[CaHandle], cred: &CaCredential) -> Result<String> {
    if let Some(n) = &args.name {
        return Ok(n.clone());
    }
    let key = cred.key_data()?;
    if let Some(h) = handles.iter().find(|h| h.public.key_data() == &key) {
        return Ok(h.name.clone());
    }
    let taken = |n: &str| handles.iter().any(|h| h.name == n);
    Ok(std::iter::once("primary".to_string())
        .chain((1..).map(|i| format!("backup-{i}")))
        .find(|n| !taken(n))
        .unwrap_or_default())
}

fn pub_path(handle: &Path) -> PathBuf {
    let mut s = handle.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::check_application;

    #[test]
    fn applications_must_be_named_ssh_applications() {
        assert!(check_application("ssh:sshbreak").is_ok());
        assert!(check_application("ssh:").is_err());
        assert!(check_application("https://x").is_err());
        assert!(check_application("ssh:a b").is_err());
    }
}
