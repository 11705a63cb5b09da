//! The server on a real socket: readiness before and after the first sample, request limits.

use std::time::Duration;

use std::sync::Arc;
use std::time::Instant;

use ipcwatch_exporter::{bind, serve, BuildInfo, State};
use ipcwatch_pipeline::{FleetPublished, Published};
use ipcwatch_sampler::Snapshot;

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

fn published(snapshot: Snapshot, finished: Instant) -> Arc<FleetPublished> {
    let one = Arc::new(Published {
        snapshot,
        charts: Default::default(),
        alarm_log: Default::default(),
        queues: Default::default(),
        alerts: Default::default(),
        failed_samples: 0,
        slow_samples: 0,
        finished,
    });
    let mut fleet = FleetPublished::single(one, Default::default());
    fleet.finished = finished;
    Arc::new(fleet)
}

fn fresh() -> Arc<FleetPublished> {
    published(Snapshot { timestamp: now(), ..Default::default() }, Instant::now())
}
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn ready_only_after_the_first_sample() {
    let state = State::new(BuildInfo { version: "t".into(), revision: "r".into() });
    let listeners = bind(&["127.0.0.1:0".to_string()]).await.unwrap();
    let port = listeners[0].local_addr().unwrap().port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listeners, state.clone(), Default::default(), None, async move {
        let _ = stop_rx.await;
    }));
    assert!(get(port, "/-/ready").await.starts_with("HTTP/1.1 503"));
    assert!(get(port, "/-/healthy").await.starts_with("HTTP/1.1 200"));
    let before = get(port, "/metrics").await;
    assert!(before.contains("ipcwatch_build_info{version=\"t\",revision=\"r\"} 1"), "{before}");
    assert!(!before.contains("sysvipc_"), "no IPC figures before the first sample: {before}");
    state.publish(fresh());
    assert!(get(port, "/-/ready").await.starts_with("HTTP/1.1 200"));
    assert!(get(port, "/-/healthy").await.starts_with("HTTP/1.1 200"));
    // A sampler that stops publishing does not look ready or healthy, and its figures are not
    // served. Age is judged on the monotonic clock, whatever the sample's wall-clock stamp.
    state.set_stale_after(Duration::from_secs(5));
    let old = Instant::now().checked_sub(Duration::from_secs(6)).unwrap();
    state.publish(published(Snapshot { timestamp: now(), ..Default::default() }, old));
    assert!(get(port, "/-/ready").await.starts_with("HTTP/1.1 503"));
    assert!(get(port, "/-/healthy").await.starts_with("HTTP/1.1 503"));
    assert!(!get(port, "/metrics").await.contains("sysvipc_"));
    // A wall-clock stamp far in the past does not make a fresh sample stale.
    state.publish(published(Snapshot { timestamp: now() - 3600.0, ..Default::default() }, Instant::now()));
    assert!(get(port, "/-/ready").await.starts_with("HTTP/1.1 200"));
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap();
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let state = State::new(BuildInfo { version: "t".into(), revision: "r".into() });
    let listeners = bind(&["127.0.0.1:0".to_string()]).await.unwrap();
    let port = listeners[0].local_addr().unwrap().port();
    tokio::spawn(serve(listeners, state, Default::default(), None, std::future::pending()));
    // A request head beyond the limit is refused, not buffered forever.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let huge = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n", "a".repeat(64 * 1024));
    let _ = s.write_all(huge.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 431"), "{text}");
    let body = get(port, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"));
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"));
}

#[test]
fn a_failed_collector_drops_its_series_and_reports_zero() {
    use ipcwatch_sampler::{CollectorReport, Limits, Origin};
    let state = State::new(BuildInfo { version: "t".into(), revision: "r".into() });
    let report =
        |name, ok| CollectorReport { name, ok, source: Origin::Syscall, duration_seconds: 0.0, error: None };
    let snapshot = Snapshot {
        timestamp: now(),
        semaphores: None,
        limits: Limits { semmni: Some(10), ..Default::default() },
        collectors: vec![report("sem", false), report("limits", true)],
        ..Default::default()
    };
    state.publish(published(snapshot, Instant::now()));
    let body = String::from_utf8(state.metrics_body(false).to_vec()).unwrap();
    assert!(
        !body.lines().any(|l| l.starts_with("sysvipc_semaphore_arrays{")),
        "no stale or made-up value:\n{body}"
    );
    // The namespace of `published` is the default identity's, inode 0.
    assert!(body.contains("sysvipc_semaphore_arrays_limit{ipc_namespace=\"0\"} 10"), "{body}");
    assert!(body.contains("ipcwatch_collector_success{collector=\"sem\",ipc_namespace=\"0\"} 0"));
    assert!(body.contains("ipcwatch_collector_success{collector=\"limits\",ipc_namespace=\"0\"} 1"));
    assert!(!body.contains("sysvipc_semaphores_limit"), "an unknown limit is left out, not 0");
}

/// The lines of a body but the process's own figures and open connections, which change
/// between two renders of one sample (gzip and text are rendered separately, when asked for).
fn steady(body: &str) -> Vec<&str> {
    body.lines()
        .filter(|l| !l.starts_with("process_") && !l.starts_with("ipcwatch_http_connections "))
        .collect()
}

#[test]
fn the_body_is_rendered_once_per_sample_and_gzip_is_the_same_text() {
    use std::io::Read;
    let state = State::new(BuildInfo { version: "t".into(), revision: "r".into() });
    state.publish(fresh());
    let a = state.metrics_body(false);
    let b = state.metrics_body(false);
    assert_eq!(a.as_ptr(), b.as_ptr(), "the same bytes are served to every scrape of one sample");
    let z1 = state.metrics_body(true);
    let z2 = state.metrics_body(true);
    assert_eq!(z1.as_ptr(), z2.as_ptr());
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&z1[..]).read_to_string(&mut unzipped).unwrap();
    assert_eq!(steady(&unzipped), steady(std::str::from_utf8(&a).unwrap()));
    state.publish(fresh());
    let c = state.metrics_body(false);
    assert_ne!(a.as_ptr(), c.as_ptr(), "a new sample gets a new body");
}

#[tokio::test]
async fn gzip_is_served_when_asked_and_head_renders_nothing() {
    let state = State::new(BuildInfo { version: "t".into(), revision: "r".into() });
    state.publish(fresh());
    let listeners = bind(&["127.0.0.1:0".to_string()]).await.unwrap();
    let port = listeners[0].local_addr().unwrap().port();
    tokio::spawn(serve(listeners, state.clone(), Default::default(), None, std::future::pending()));
    let raw = |req: String| async move {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        out
    };
    let out =
        raw("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n".into())
            .await;
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    let mut text = String::new();
    use std::io::Read;
    flate2::read::GzDecoder::new(&out[split + 4..]).read_to_string(&mut text).unwrap();
    assert_eq!(steady(&text), steady(std::str::from_utf8(&state.metrics_body(false)).unwrap()));
    let out =
        raw("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip;q=0\r\nConnection: close\r\n\r\n"
            .into())
        .await;
    assert!(!String::from_utf8_lossy(&out).to_lowercase().contains("content-encoding"));
    let out = raw("HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into()).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("\r\n\r\n"), "{text}");
}

#[tokio::test]
async fn a_connection_beyond_the_cap_takes_the_slot_of_one_that_sends_nothing() {
    let state = State::new(BuildInfo { version: "t".into(), revision: "r".into() });
    state.publish(fresh());
    let listeners = bind(&["127.0.0.1:0".to_string()]).await.unwrap();
    let port = listeners[0].local_addr().unwrap().port();
    let limits = ipcwatch_exporter::Limits { max_connections: 2, max_connections_per_client: 2 };
    tokio::spawn(serve(listeners, state, limits, None, std::future::pending()));
    // Two connections that never send a request take both slots (slowloris).
    let mut idle1 = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _idle2 = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third is served at once, in the slot of the one that has waited longest.
    let answer = tokio::time::timeout(Duration::from_secs(2), get(port, "/-/healthy"))
        .await
        .expect("served without waiting for a slot");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(2), idle1.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the oldest idle connection was let go: {closed:?}");
}
