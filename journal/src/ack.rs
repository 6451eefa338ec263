//! The acknowledged offset: everything before it has been delivered. Written to a temp file and
//! renamed, so a crash leaves either the old or the new value, never a torn one.
use crate::error::{JournalError, io};
use std::io::Write;
use std::path::Path;

const FILE: &str = "acked";

pub(crate) fn load(dir: &Path) -> Result<u64, JournalError> {
    let path = dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().parse::<u64>().unwrap_or(0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io(path)(e)),
    }
}

pub(crate) fn store(dir: &Path, offset: u64) -> Result<(), JournalError> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .mode(0o600)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io(&tmp))?
    };
    writeln!(f, "{offset}").map_err(io(&tmp))?;
    f.sync_data().map_err(io(&tmp))?;
    std::fs::rename(&tmp, dir.join(FILE)).map_err(io(dir))?;
    Ok(())
}
