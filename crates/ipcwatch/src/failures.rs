//! `ipcwatch snapshot --failures`: the latest refusals the running daemon's eBPF probes saw.
//! Only the daemon can tell (the kernel keeps no record of a refused call), so this asks it
//! over HTTP, at the address its config listens on, or `--url`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};

/// Where the daemon of `listen` (a `[web] listen_addresses` entry) answers locally.
pub fn local_url(listen: &str) -> String {
    let (host, port) = listen.rsplit_once(':').unwrap_or(("", listen));
    let host = match host {
        "" | "0.0.0.0" => "127.0.0.1",
        "[::]" => "[::1]",
        h => h,
    };
    format!("http://{host}:{port}")
}

/// GET `url` + `/failures` (plain HTTP/1.1: the daemon on this machine) -> the JSON body.
pub fn fetch(url: &str) -> anyhow::Result<String> {
    let Some(rest) = url.strip_prefix("http://") else {
        if url.starts_with("https://") {
            bail!("{url} is TLS, which --failures does not speak: read {url}/failures with curl");
        }
        bail!("--url {url}: expected http://HOST:PORT");
    };
    let host = rest.trim_end_matches('/');
    let addr = host
        .to_socket_addrs()
        .with_context(|| format!("--url {url}: not HOST:PORT"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("no ipcwatch daemon answers at {url} (is it running? else pass --url)"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /failures HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.take(16 << 20).read_to_end(&mut answer).with_context(|| format!("reading {url}/failures"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").context("the daemon's answer has no body")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    match status {
        "200" => {}
        "401" => bail!("{url} asks for a password: read {url}/failures with curl -u USER"),
        "404" => bail!("{url} has no /failures: is it an ipcwatch older than the eBPF probes?"),
        s => bail!("{url}/failures answered {s}: {}", body.lines().next().unwrap_or("")),
    }
    if head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked")) {
        return Ok(unchunk(body));
    }
    Ok(body.to_string())
}

fn unchunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The answer as a table, newest first.
pub fn table(json: &str) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let v: serde_json::Value = serde_json::from_str(json).context("the daemon's /failures is not JSON")?;
    let mut out = String::new();
    if v["enabled"] != true {
        let reason = v["reason"].as_str().unwrap_or("unknown");
        writeln!(out, "The daemon's eBPF probes are off ({reason}): it counts no refusals.")?;
        return Ok(out);
    }
    let list = v["failures"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        writeln!(out, "No IPC call refused since the daemon started.")?;
        return Ok(out);
    }
    writeln!(
        out,
        "{:<24} {:<12} {:<8} {:<16} {:<8} {:<7} {:<12} {:<10} {:>6}  OWNER",
        "TIME (UTC)", "NAMESPACE", "PID", "COMM", "CALL", "ERRNO", "KEY", "SIZE", "UID"
    )?;
    for f in &list {
        let ms = f["time_ms"].as_i64().unwrap_or(0);
        let (y, mo, d, h, mi, s) = ipcwatch_alerts::delivery::utc(ms.div_euclid(1000));
        let time = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{:03}", ms.rem_euclid(1000));
        let owner: Vec<String> = f["owner"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect())
            .unwrap_or_default();
        let text = |k: &str| f[k].as_str().unwrap_or("").to_string();
        writeln!(
            out,
            "{:<24} {:<12} {:<8} {:<16} {:<8} {:<7} {:<12} {:<10} {:>6}  {}",
            time,
            f["ipc_namespace"].to_string(),
            f["pid"].to_string(),
            text("comm"),
            text("call"),
            text("errno_name"),
            text("key"),
            f["size"].to_string(),
            f["uid"].to_string(),
            if owner.is_empty() { "-".to_string() } else { owner.join(" ") },
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_url_of_a_listen_address() {
        assert_eq!(local_url(":9917"), "http://127.0.0.1:9917");
        assert_eq!(local_url("0.0.0.0:9917"), "http://127.0.0.1:9917");
        assert_eq!(local_url("[::]:80"), "http://[::1]:80");
        assert_eq!(local_url("10.0.0.1:9917"), "http://10.0.0.1:9917");
    }

    #[test]
    fn a_chunked_body_is_put_back_together() {
        assert_eq!(unchunk("4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"), "abcdefg");
    }

    #[test]
    fn the_table_names_the_process_and_says_when_probes_are_off() {
        let off = table(r#"{"enabled":false,"reason":"tracefs not found","failures":[]}"#).unwrap();
        assert!(off.contains("off (tracefs not found)"), "{off}");
        let one = r#"{"enabled":true,"reason":null,"failures":[{"time_ms":1796171971571,"ipc_namespace":4026532178,
            "owner":{"pod":"db-0","pod_namespace":"prod"},"pid":8793,"uid":999,"comm":"postgres","call":"semget",
            "kind":"sem","errno":28,"errno_name":"ENOSPC","key":"0x0052e2c1","size":17}]}"#;
        let t = table(one).unwrap();
        assert!(
            t.contains("2026-12-02 00:39:31.571") && t.contains(" postgres ") && t.contains(" semget "),
            "{t}"
        );
        assert!(t.contains("ENOSPC") && t.contains("pod=db-0 pod_namespace=prod"), "{t}");
    }
}
