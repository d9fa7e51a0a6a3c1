//! File-system effects with the safety properties sshbreak promises: files are created with their
//! final mode from the first byte (never chmod-ed afterwards), writes are atomic (a temporary file in
//! the same directory, fsync, rename), directories are 0700, and cross-process updates are
//! serialised by a lock file that is never replaced.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Mode for secrets and anything only the owner should read (handles, private keys, logs).
pub const PRIVATE: u32 = 0o600;
/// Mode for public material (public keys, certificates, the trust bundle).
pub const PUBLIC: u32 = 0o644;

/// Create `dir` (and missing parents) as 0700. An existing directory is left as it is, but one that
/// others can write to is refused: anything sshbreak later reads from it could have been planted.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            if meta.permissions().mode() & 0o022 != 0 {
                bail!(
                    "{} is writable by other users; fix it with `chmod 700 {}`",
                    dir.display(),
                    dir.display()
                );
            }
            Ok(())
        }
        Ok(_) => bail!("{} exists and is not a directory", dir.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create directory {}", dir.display())),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

fn temp_in(path: &Path, mode: u32) -> Result<tempfile::NamedTempFile> {
    let dir = parent_of(path);
    tempfile::Builder::new()
        .prefix(".sshbreak-tmp-")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn write_temp(path: &Path, mode: u32, contents: &[u8]) -> Result<tempfile::NamedTempFile> {
    let mut tmp = temp_in(path, mode)?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(tmp)
}

fn sync_dir(path: &Path) {
    // Makes the rename durable; failure here is not worth failing the command for.
    if let Ok(d) = File::open(parent_of(path)) {
        let _ = d.sync_all();
    }
}

/// Atomically replace (or create) `path` with `contents`, created with `mode`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let tmp = write_temp(path, mode, contents)?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    sync_dir(path);
    Ok(())
}

/// Atomically create `path` with `contents`; fails, writing nothing, if it already exists.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let tmp = write_temp(path, mode, contents)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {
            sync_dir(path);
            Ok(())
        }
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
            bail!("{} already exists", path.display())
        }
        Err(e) => Err(e.error).with_context(|| format!("cannot write {}", path.display())),
    }
}

/// Write `path` atomically, refusing to replace an existing file unless `overwrite`.
pub fn write_file(path: &Path, contents: &[u8], mode: u32, overwrite: bool) -> Result<()> {
    if overwrite {
        write_atomic(path, contents, mode)
    } else {
        write_new(path, contents, mode)
    }
}

/// Append one line to a log file created `mode` on first use, under the caller's lock.
pub fn append_line(path: &Path, line: &str, mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot append to {}", path.display()))
}

/// An exclusive advisory lock held until dropped. The lock lives on `<path>.lock`, a file that is
/// never renamed over, so a process waiting for the lock always sees the newest data once it has it.
pub struct Lock {
    _file: File,
}

pub fn lock(path: &Path) -> Result<Lock> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(PRIVATE)
        .open(&lock_path)
        .with_context(|| format!("cannot open lock file {}", lock_path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    Ok(Lock { _file: file })
}

/// Read a file that is expected to be small (keys, certificates, bundles), refusing anything huge so a
/// wrong path (a disk image, /dev/zero) fails fast instead of eating memory.
pub fn read_small(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    const LIMIT: u64 = 1 << 20;
    let f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(LIMIT + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if buf.len() as u64 > LIMIT {
        bail!(
            "{} is larger than 1 MiB; is it the right file?",
            path.display()
        );
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_born_with_their_mode_and_never_clobbered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        write_new(&p, b"secret", PRIVATE).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = write_new(&p, b"other", PRIVATE).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"secret");
        write_atomic(&p, b"new", PUBLIC).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn private_dirs_are_0700_and_group_writable_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("a/b");
        ensure_private_dir(&home).unwrap();
        assert_eq!(
            fs::metadata(&home).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::set_permissions(&home, Permissions::from_mode(0o777)).unwrap();
        assert!(ensure_private_dir(&home).is_err());
    }
}
