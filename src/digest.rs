//! Content digests of files: the blake3 of a file's bytes, in hex.
//!
//! One function for the two places that hash what a user points at: the plan
//! (files a stage declares it reads, which enter its fingerprint) and dataset
//! stages (the sources recorded in `meta.json`), so both always agree on what a
//! file's content hash is.

use std::io::Read;
use std::path::Path;

/// blake3 of a file's content, in hex, read in 64 KiB chunks.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}
