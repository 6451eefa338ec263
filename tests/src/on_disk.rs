//! What a test reads straight off disk: every byte of a gateway's journal, to prove a value
//! never reached it (or did).

/// Every byte of every file in the journal directory `dir`.
pub fn journal_bytes(dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        all.extend(std::fs::read(entry?.path())?);
    }
    Ok(all)
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    memchr::memmem::find(haystack, needle.as_bytes()).is_some()
}
