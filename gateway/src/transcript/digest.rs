//! Signed session digests: every digest interval the digester signs, for each open session with
//! new events, its last seq and last chain hash, and seals each ended session with a final
//! `closed` digest. Signing runs on this task, never on a request path.
use super::recorder::{Recorder, unix_nanos};
use super::session::DigestDue;
use super::signing::DigestSigner;
use gatehouse_proto::v1::{Event, SessionDigest, event::Payload};
use std::sync::Arc;
use std::time::Duration;

pub struct Digester {
    recorder: Arc<Recorder>,
    signer: Arc<DigestSigner>,
    interval: Duration,
}

impl Digester {
    pub fn new(recorder: Arc<Recorder>, signer: Arc<DigestSigner>, interval: Duration) -> Self {
        Self {
            recorder,
            signer,
            interval,
        }
    }

    /// Writes due digests every interval until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let me = self.clone();
            // Appending may fsync: keep it off the reactor.
            if let Err(e) = tokio::task::spawn_blocking(move || me.tick(false)).await {
                tracing::error!(error = %e, "digest task failed");
            }
        }
    }

    /// Writes every digest due now; with `shutting_down`, seals every session. Returns how many
    /// digests were written.
    pub fn tick(&self, shutting_down: bool) -> usize {
        let mut written = 0;
        for due in self.recorder.digests_due(shutting_down) {
            let event = self.digest_event(&due);
            match self.recorder.record_digest(&due, event) {
                Ok(_) => written += 1,
                Err(e) => tracing::error!(
                    session = %due.session_id,
                    last_seq = due.last_seq,
                    error = %e,
                    "cannot record a session digest"
                ),
            }
        }
        written
    }

    fn digest_event(&self, due: &DigestDue) -> Event {
        let mut digest = SessionDigest {
            session_id: due.session_id.clone(),
            last_seq: due.last_seq,
            last_hash: due.last_hash.clone().into(),
            // Sequences are gapless from 1.
            event_count: due.last_seq,
            time_unix_nano: unix_nanos(),
            closed: due.closing,
            ..Default::default()
        };
        self.signer.sign(&mut digest);
        Event {
            time_unix_nano: digest.time_unix_nano,
            identity: due.identity.clone(),
            client: due.client.clone(),
            payload: Some(Payload::Digest(digest)),
            ..Default::default()
        }
    }
}
