//! Reading a bundle's files safely: regular files only (no symbolic
//! links, FIFOs or devices), bounded sizes, and each file's identity kept
//! from the moment it was hashed, so what was hashed is what is parsed.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use actlog_core::Hash;
use actlog_core::b64;
use actlog_core::bundle::{BundleFailure, bad};
use sha2::{Digest, Sha256};

use crate::verify::BUNDLE_FILES_MAX;

/// The file `name`, at most `max` bytes.
pub fn read_limited(dir: &Path, name: &str, max: u64) -> Result<Vec<u8>, BundleFailure> {
    let f = match open_regular(dir, name) {
        Err(e) if e.reason.starts_with("listed in the signed manifest but missing") => {
            return bad(Some(name), None, "missing: this is not an actlog export bundle");
        }
        other => other?,
    };
    let mut out = Vec::new();
    f.take(max + 1).read_to_end(&mut out).or_else(|e| bad(Some(name), None, format!("cannot read: {e}")))?;
    if out.len() as u64 > max {
        return bad(Some(name), None, format!("larger than bundle_manifest_bytes_max ({max} bytes)"));
    }
    Ok(out)
}

/// Every regular file under `dir`, relative and `/`-separated. Symbolic
/// links and special files are refused: they could point outside.
pub fn list_files(dir: &Path) -> Result<Vec<String>, BundleFailure> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, rel)) = stack.pop() {
        let rd = fs::read_dir(&d).or_else(|e| bad(Some(&rel), None, format!("cannot list: {e}")))?;
        for item in rd {
            let item = item.or_else(|e| bad(Some(&rel), None, format!("cannot list: {e}")))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let ft = item.file_type().or_else(|e| bad(Some(&r), None, format!("cannot stat: {e}")))?;
            if ft.is_symlink() {
                return bad(Some(&r), None, "a symbolic link: bundles hold regular files only");
            } else if ft.is_dir() {
                stack.push((item.path(), r));
            } else if ft.is_file() {
                out.push(r);
                if out.len() > BUNDLE_FILES_MAX {
                    return bad(None, None, format!("more than bundle_files_max ({BUNDLE_FILES_MAX}) files"));
                }
            } else {
                return bad(Some(&r), None, "not a regular file");
            }
        }
    }
    Ok(out)
}

/// What identifies an open file: device, inode, size, and modification and
/// change times.
pub type FileId = (u64, u64, u64, i64, i64, i64, i64);

/// The identity of an open file.
pub fn file_id(f: &File, rel: &str) -> Result<FileId, BundleFailure> {
    use std::os::unix::fs::MetadataExt;
    let m = f.metadata().or_else(|e| bad(Some(rel), None, format!("cannot stat: {e}")))?;
    Ok((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
}

/// The identity of each bundle file when it was hashed. Every later read
/// opens the file again and must find the same file, unchanged, so what
/// was hashed is what is parsed: a file (or a symbolic link) swapped into
/// the directory between the hash check and the parse is refused. Files are
/// not held open, so a bundle of years of daily files does not run out of
/// file descriptors.
pub struct Opened<'a> {
    /// The bundle.
    pub dir: &'a Path,
    /// Each hashed file's identity.
    pub ids: HashMap<String, FileId>,
}

impl Opened<'_> {
    /// The file `rel`, from its start.
    pub fn read(&self, rel: &str) -> Result<File, BundleFailure> {
        let want = self.ids.get(rel).ok_or_else(|| BundleFailure {
            file: Some(rel.into()),
            seq: None,
            reason: "not a file of the signed manifest".into(),
        })?;
        let f = open_regular(self.dir, rel)?;
        if file_id(&f, rel)? != *want {
            return bad(Some(rel), None, "changed or replaced while the bundle was being verified");
        }
        Ok(f)
    }
}

/// Opens `rel` under `dir` for reading without following a symbolic link
/// in its last component and without blocking on a FIFO, and checks that
/// what was opened is a regular file.
pub fn open_regular(dir: &Path, rel: &str) -> Result<File, BundleFailure> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dir.join(rel));
    let f = match f {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return bad(Some(rel), None, "listed in the signed manifest but missing");
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return bad(Some(rel), None, "a symbolic link: bundles hold regular files only");
        }
        Err(e) => return bad(Some(rel), None, format!("cannot read: {e}")),
    };
    let meta = f.metadata().or_else(|e| bad(Some(rel), None, format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return bad(Some(rel), None, "not a regular file");
    }
    Ok(f)
}

/// SHA-256 (hex) and size of a file, read to its end.
pub fn hash_file(f: &mut File, rel: &str) -> Result<(String, u64), BundleFailure> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).or_else(|e| bad(Some(rel), None, format!("cannot read: {e}")))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// A base64 32-byte hash of the manifest.
pub fn decode_hash(file: &str, seq: Option<u64>, text: &str) -> Result<Hash, BundleFailure> {
    b64::decode_strict(text).and_then(|v| <[u8; 32]>::try_from(v).ok()).ok_or_else(|| BundleFailure {
        file: Some(file.into()),
        seq,
        reason: format!("`{text}` is not a base64 32-byte hash"),
    })
}
