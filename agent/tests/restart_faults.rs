//! The real agent SIGKILLed while connections are being flagged, then restarted on the same pin
//! directory and journal: the pinned maps are reused (one attachment, kernel counters kept),
//! enforcement resumes, every alert journaled before the crash is still there, windows open at
//! the crash are reported by the next agent, and no window is reported under two event ids.
//! Needs root; skips loudly without it.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{
    Agent, HelperResult, PinDir, TestCgroup, closed_port, connect_from, loaded_named, read_alerts,
    require,
};

/// Not a test: the body of helper processes that `support::connect_from` re-executes.
#[test]
#[ignore = "helper process entry point, run by the other tests"]
fn helper() {
    support::helper_main();
}

/// Connects per helper process: one process, one dedup window, one alert with this count.
const PER_HELPER: u64 = 20;

fn endpoint_arg(addr: SocketAddr) -> String {
    format!("--endpoint=external={addr}")
}

/// A helper run and when it happened.
struct Run {
    started: Instant,
    ended: Instant,
    result: HelperResult,
}

#[test]
fn sigkill_while_flagging_then_restart_keeps_every_alert_once_and_enforces_again() {
    let Some(_serial) =
        require("sigkill_while_flagging_then_restart_keeps_every_alert_once_and_enforces_again")
    else {
        return;
    };
    let cg = TestCgroup::new(&["pod", "enforced"]);
    let pin = PinDir::new();
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens: each connect is refused at once, after the hooks ran (a listener's
    // backlog would fill up with this many).
    let target = closed_port("127.0.0.1:0");
    let args = [
        endpoint_arg(target),
        format!("--attach-cgroup={}", cg.root.display()),
        format!("--enforce-cgroup={}", cg.path("enforced").display()),
        "--dedup-window=200ms".into(),
    ];
    let before = loaded_named("gh_connect4");
    let first = Agent::start(dir.path(), &pin.0, &args);
    let blocked = connect_from(&cg.path("enforced"), target, 1);
    assert_eq!((blocked.eperm, blocked.refused), (1, 0), "{blocked:?}");

    // Helper processes connect from the pod, one after another, through the crash and restart.
    let stop = Arc::new(AtomicBool::new(false));
    let runs: Arc<Mutex<Vec<Run>>> = Arc::default();
    let flagger = {
        let (stop, runs, pod) = (stop.clone(), runs.clone(), cg.path("pod"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let started = Instant::now();
                let result = connect_from(&pod, target, PER_HELPER);
                let ended = Instant::now();
                assert_eq!(result.refused, PER_HELPER, "audit mode must not interfere");
                runs.lock().unwrap().push(Run {
                    started,
                    ended,
                    result,
                });
            }
        })
    };
    // Crash once several alerts are journaled, while more connects are under way.
    let journaled = first.wait_alerts(4, Duration::from_secs(30));
    assert!(journaled.len() >= 4, "{journaled:#?}");
    let matched_before = first.metric("gatehouse_agent_matches_total");
    let journaled = read_alerts(&first.journal);
    let crashed_at = Instant::now();
    first.crash();
    assert_eq!(
        loaded_named("gh_connect4"),
        before,
        "nothing stays attached"
    );
    for map in ["GH_ENDPOINTS4", "GH_DEDUP", "GH_COUNTERS"] {
        assert!(pin.0.join(map).exists(), "{map} stays pinned");
    }
    std::thread::sleep(Duration::from_millis(300));

    let second = Agent::start(dir.path(), &pin.0, &args);
    let restarted_at = Instant::now();
    assert_eq!(
        loaded_named("gh_connect4"),
        before + 1,
        "exactly one attachment after restart"
    );
    // Enforcement resumes with the reused maps.
    let blocked = connect_from(&cg.path("enforced"), target, 1);
    assert_eq!((blocked.eperm, blocked.refused), (1, 0), "{blocked:?}");
    // Flagging resumes: let a few helpers run entirely under the new agent.
    let deadline = Instant::now() + Duration::from_secs(30);
    while runs
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.started > restarted_at)
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "the helpers stalled");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Release);
    flagger.join().unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    // The kernel counters were kept in the pinned map across the crash.
    let matched_after = second.metric("gatehouse_agent_matches_total");
    assert!(
        matched_after >= matched_before + 2 * PER_HELPER,
        "matches {matched_before} before the crash, {matched_after} after"
    );
    second.stop();
    assert_eq!(loaded_named("gh_connect4"), before, "clean shutdown");

    let alerts = read_alerts(dir.path());
    let ids: BTreeSet<&str> = alerts.iter().map(|(e, _)| e.event_id.as_str()).collect();
    // Nothing journaled before the crash was lost.
    for (e, a) in &journaled {
        assert!(
            ids.contains(e.event_id.as_str()),
            "alert {} (tgid {}) lost after the restart",
            e.event_id,
            a.tgid
        );
    }
    // One window per helper process: at most one event id each; an id written twice (a
    // window re-reported after the crash) carries the same alert.
    let mut by_tgid: BTreeMap<u32, BTreeMap<&str, Vec<u64>>> = BTreeMap::new();
    for (e, a) in &alerts {
        by_tgid
            .entry(a.tgid)
            .or_default()
            .entry(e.event_id.as_str())
            .or_default()
            .push(a.count);
    }
    for (tgid, windows) in &by_tgid {
        assert_eq!(
            windows.len(),
            1,
            "tgid {tgid} reported under several ids: {windows:?}"
        );
    }
    let runs = runs.lock().unwrap();
    let mut checked = (0, 0);
    for run in runs.iter() {
        let Some(windows) = by_tgid.get(&run.result.tgid) else {
            // Only connects made while no agent was attached may go unseen.
            assert!(
                run.ended > crashed_at && run.started < restarted_at,
                "helper {} ran under an agent and has no alert",
                run.result.tgid
            );
            continue;
        };
        let counts = windows.values().next().unwrap();
        if run.ended < crashed_at {
            // Its whole window was under the first agent: journaled before the crash, or
            // swept from the pinned DEDUP map by the second.
            assert!(
                counts.iter().all(|c| *c == PER_HELPER),
                "tgid {}: {counts:?}",
                run.result.tgid
            );
            checked.0 += 1;
        } else if run.started > restarted_at {
            assert_eq!(counts, &vec![PER_HELPER], "tgid {}", run.result.tgid);
            checked.1 += 1;
        }
    }
    assert!(
        checked.0 >= 4 && checked.1 >= 3,
        "helpers before the crash / after the restart: {checked:?}"
    );
    println!(
        "{} alerts, {} helpers before the crash and {} after the restart each alerted once",
        alerts.len(),
        checked.0,
        checked.1
    );
}
