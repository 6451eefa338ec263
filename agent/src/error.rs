use std::path::PathBuf;

/// What stops the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("kernel feature missing: {0}")]
    Kernel(String),
    #[error(
        "this agent was built without its eBPF object; run scripts/install-ebpf-toolchain.sh, \
         put its output dir on PATH and rebuild"
    )]
    NoObject,
    #[error("loading the eBPF object")]
    Load(#[source] aya::EbpfError),
    #[error("program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("map {0} missing from the object")]
    MissingMap(&'static str),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("shipper")]
    Shipper(#[from] gatehouse_shipper::ShipperError),
    #[error("journal")]
    Journal(#[from] gatehouse_journal::JournalError),
    #[error("kubernetes")]
    Kube(#[from] crate::kube::KubeError),
}

impl AgentError {
    /// 64 for bad config (house rule), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Kube(crate::kube::KubeError::Config(_)) => 64,
            _ => 1,
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
