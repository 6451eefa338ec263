//! Stamps `--version` with the git revision and build date (`build/version.rs`).
#[path = "../build/version.rs"]
mod version;

fn main() {
    version::emit();
}
