//! The dead-letter file: events ClickHouse refused as bad data, one JSON object per line with
//! the reason and the event (base64 protobuf), appended and synced before the batch is acked.
use base64::Engine;
use std::io::Write;
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
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
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
