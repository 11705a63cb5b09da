//! A tiny HTTP/1.1 client and exposition parser, enough to check the daemon from outside.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`, so the body runs to the end of
/// the stream): the status, the headers and the body's bytes.
fn exchange(port: u16, method: &str, path: &str, headers: &str) -> std::io::Result<(Response, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    Ok((Response { status, headers, body: String::new() }, body))
}

pub fn request(port: u16, method: &str, path: &str) -> std::io::Result<Response> {
    let (mut r, body) = exchange(port, method, path, "")?;
    r.body = String::from_utf8_lossy(&body).into_owned();
    Ok(r)
}

/// GET with `Accept-Encoding: gzip`, as Prometheus scrapes: the body comes back decompressed
/// (an answer that is not gzip fails the test).
pub fn get_gzip(port: u16, path: &str) -> Response {
    let (mut r, body) = exchange(port, "GET", path, "Accept-Encoding: gzip\r\n")
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(r.header("content-encoding"), Some("gzip"), "{:?}", r.headers);
    flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut r.body).expect("a gzip body");
    r
}

pub fn get(port: u16, path: &str) -> Response {
    request(port, "GET", path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Polls until `/-/ready` answers 200.
pub fn wait_ready(port: u16, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if request(port, "GET", "/-/ready").is_ok_and(|r| r.status == 200) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("daemon not ready; log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `name{labels}` -> value, for every sample line of a text exposition, with the
/// `ipc_namespace` label left out: for a daemon that sees one namespace (its own, as in a
/// throw-away namespace), the keys read as they would without it. (`ns_samples` keeps it.)
pub fn samples(body: &str) -> BTreeMap<String, f64> {
    let strip = |k: &str| -> String {
        let Some((name, rest)) = k.split_once('{') else { return k.to_string() };
        let labels: Vec<&str> =
            rest.trim_end_matches('}').split(',').filter(|l| !l.starts_with("ipc_namespace=")).collect();
        if labels.is_empty() || labels == [""] {
            name.to_string()
        } else {
            format!("{name}{{{}}}", labels.join(","))
        }
    };
    ns_samples(body).into_iter().map(|(k, v)| (strip(&k), v)).collect()
}

/// `name{labels}` -> value, every label kept.
pub fn ns_samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN)))
        .collect()
}

/// Waits until `check` accepts a fresh /metrics body (samples arrive every second).
pub fn wait_metrics(
    port: u16,
    mut check: impl FnMut(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = samples(&get(port, "/metrics").body);
        if check(&m) || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
