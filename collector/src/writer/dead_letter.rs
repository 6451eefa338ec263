//! The dead-letter file: events ClickHouse refused as bad data, one JSON object per line with
//! the reason and the event (base64 protobuf), appended and synced before the batch is acked.
use base64::Engine;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct DeadLetter {
    path: PathBuf,
}

impl DeadLetter {
    /// Checks that the file can be opened for appending (creating its directory).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        // Dead letters hold whole recorded events (request bodies, Secrets): owner-only, also
        // when the file was left wider by an older version or a hand-made copy.
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `events` with `reason`, durably.
    pub fn write(&self, reason: &str, events: &[bytes::Bytes]) -> std::io::Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut buf = Vec::new();
        for e in events {
            let line = serde_json::json!({
                "time_unix_nano": now.to_string(),
                "reason": reason,
                "event": base64::engine::general_purpose::STANDARD.encode(e),
            });
            buf.extend_from_slice(line.to_string().as_bytes());
            buf.push(b'\n');
        }
        let mut f = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        f.write_all(&buf)?;
        f.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::DeadLetter;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_file_is_owner_only_when_created_and_when_found_wider() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("sub/dead-letter.ndjson");
        let dl = DeadLetter::open(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o600);
        dl.write("test", &[bytes::Bytes::from_static(b"secret")])
            .unwrap();
        assert_eq!(mode(&fresh), 0o600);

        let old = dir.path().join("old.ndjson");
        std::fs::write(&old, "").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        DeadLetter::open(&old).unwrap();
        assert_eq!(mode(&old), 0o600);
    }
}
