//! The HTTP/1.1 server: binding, routing, timeouts and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderValue, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, VARY,
    WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::guard::{Conns, Ticket, TimedIo};
use crate::web::{Auth, AuthCache, WebConfigFile};
use crate::State;

/// Slow clients get this long to send their request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (and body) we accept; our routes take no input beyond a query.
const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// How long in-flight requests may take to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A listen address that could not be bound, with the address in the message.
#[derive(Debug, thiserror::Error)]
// The OS error is in the message and not a `source`: the one line an operator reads says
// it once (anyhow prints a chain of sources after the message).
#[error("cannot listen on {address}: {error}")]
pub struct BindError {
    pub address: String,
    pub error: std::io::Error,
}

/// Binds every address (`host:port`, `[v6]:port`, or `:port` for all interfaces).
pub async fn bind(addresses: &[String]) -> Result<Vec<TcpListener>, BindError> {
    let mut listeners = Vec::new();
    for address in addresses {
        let err = |error| BindError { address: address.clone(), error };
        let listener = match address.strip_prefix(':') {
            // `:port` means every interface; prefer the dual-stack IPv6 socket.
            Some(port) => {
                let port: u16 = port.parse().map_err(|_| err(std::io::ErrorKind::InvalidInput.into()))?;
                match TcpListener::bind(SocketAddr::from(([0u16; 8], port))).await {
                    Ok(l) => l,
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(err(e)),
                    Err(_) => TcpListener::bind(SocketAddr::from(([0u8; 4], port))).await.map_err(err)?,
                }
            }
            None => TcpListener::bind(address.as_str()).await.map_err(err)?,
        };
        listeners.push(listener);
    }
    Ok(listeners)
}

/// How the server bounds what clients can take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once. A newcomer beyond it takes the slot of the connection that
    /// has waited longest without a request in flight, or is refused if every one is busy.
    pub max_connections: usize,
    /// Connections one client address may hold; beyond it the same, within its own.
    pub max_connections_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_connections: 512, max_connections_per_client: 64 }
    }
}

impl Limits {
    /// The connection cap, lowered to fit the open-file limit (with room for the daemon's own
    /// descriptors) so that accept never fails for want of one.
    pub fn fitted_to_open_files(self) -> Limits {
        match ipcwatch_sampler::open_file_limit() {
            Some(fds) if fds < self.max_connections + 64 => {
                let cap = fds.saturating_sub(64).max(1);
                tracing::warn!(
                    max_connections = self.max_connections,
                    open_files = fds,
                    cap,
                    "max_connections lowered to fit the open-file limit (LimitNOFILE)"
                );
                Limits { max_connections: cap, ..self }
            }
            _ => self,
        }
    }
}

/// Accept errors (out of descriptors, mostly) back off from here, doubling up to a second.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Accepts on one listener and admits each connection ([`Conns::admit`]); errors are logged
/// once per episode and backed off, so running out of descriptors neither spins nor floods
/// the log.
async fn accept_loop(
    listener: TcpListener,
    conns: Arc<Conns>,
    auth: Arc<AuthCache>,
    state: Arc<State>,
    tx: tokio::sync::mpsc::Sender<(tokio::net::TcpStream, Ticket)>,
) {
    let mut backoff = ACCEPT_BACKOFF.0;
    let mut failing = false;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("accepting connections again");
                    backoff = ACCEPT_BACKOFF.0;
                }
                // An address that keeps failing basic auth is closed at once, before a TLS
                // handshake is paid for.
                if auth.throttled(peer.ip()) {
                    state.auth_throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
                // Refused (every slot it could take is busy): closed at once.
                let Some(ticket) = conns.admit(peer.ip()) else { continue };
                if tx.send((stream, ticket)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %e, "accepting a connection failed; backing off until it works again");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
            }
        }
    }
}

/// Serves until `shutdown` completes, then lets in-flight requests finish (bounded).
/// With a web configuration file, every connection and request reads it as it is now:
/// TLS (and client certificates), basic auth and extra headers.
pub async fn serve(
    listeners: Vec<TcpListener>,
    state: Arc<State>,
    limits: Limits,
    web: Option<Arc<WebConfigFile>>,
    shutdown: impl Future<Output = ()>,
) {
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel(64);
    let conns = Conns::new(limits.max_connections, limits.max_connections_per_client);
    state.set_connections(conns.clone());
    let auth = Arc::new(AuthCache::default());
    let accept_tasks: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(accept_loop(l, conns.clone(), auth.clone(), state.clone(), conn_tx.clone())))
        .collect();
    drop(conn_tx);

    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_REQUEST_BYTES);
    let graceful = Arc::new(GracefulShutdown::new());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            Some((stream, ticket)) = conn_rx.recv() => {
                let (state, web, auth, graceful, http) = (state.clone(), web.clone(), auth.clone(), graceful.clone(), http.clone());
                tokio::spawn(async move {
                    let ticket = Arc::new(ticket);
                    let evicted = ticket.evicted.clone();
                    tokio::select! {
                        _ = connection(stream, state, web, auth, ticket.clone(), &graceful, &http) => {}
                        // Its slot went to a newcomer: the connection is dropped here.
                        _ = evicted.notified() => {}
                    }
                    drop(ticket);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    for task in accept_tasks {
        task.abort();
    }
    let graceful = Arc::try_unwrap(graceful).ok();
    if let Some(g) = graceful {
        if tokio::time::timeout(SHUTDOWN_GRACE, g.shutdown()).await.is_err() {
            tracing::warn!("some connections were still open at shutdown");
        }
    }
}

/// One connection: the TLS handshake if the web configuration asks for it, then HTTP/1.1.
async fn connection(
    stream: tokio::net::TcpStream,
    state: Arc<State>,
    web: Option<Arc<WebConfigFile>>,
    auth: Arc<AuthCache>,
    ticket: Arc<Ticket>,
    graceful: &GracefulShutdown,
    http: &hyper::server::conn::http1::Builder,
) {
    let peer = stream.peer_addr().map(|a| a.ip()).ok();
    let stream = TimedIo::new(stream, Some(ticket.phase.clone()));
    let tls = match web.as_ref().map(|w| w.current()) {
        Some(Ok(loaded)) => loaded.tls.clone(),
        Some(Err(e)) => {
            tracing::error!(error = %e, "web configuration unusable; connection refused");
            return;
        }
        None => None,
    };
    let service = hyper::service::service_fn(move |req| {
        let (state, web, auth, ticket) = (state.clone(), web.clone(), auth.clone(), ticket.clone());
        async move {
            ticket.in_request(true);
            let r = authorized(&state, web.as_deref(), &auth, peer, req).await;
            ticket.in_request(false);
            Ok::<_, Infallible>(r)
        }
    });
    let result = match tls {
        Some(config) => {
            let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
            match tokio::time::timeout(HEADER_READ_TIMEOUT, accept).await {
                Ok(Ok(tls)) => graceful.watch(http.serve_connection(TokioIo::new(tls), service)).await,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            }
        }
        None => graceful.watch(http.serve_connection(TokioIo::new(stream), service)).await,
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Basic auth and extra headers from the web configuration around [`handle`].
async fn authorized<B>(
    state: &State,
    web: Option<&WebConfigFile>,
    auth: &AuthCache,
    peer: Option<std::net::IpAddr>,
    req: Request<B>,
) -> Response<Full<Bytes>> {
    let loaded = match web.map(WebConfigFile::current) {
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            tracing::error!(error = %e, "web configuration unusable");
            return respond(StatusCode::INTERNAL_SERVER_ERROR, TEXT, "Internal Server Error\n");
        }
        None => None,
    };
    let Some(loaded) = loaded else { return handle(state, req) };
    let verdict = match loaded.users.is_empty() {
        true => Auth::Passed,
        false => auth.check(&loaded.users, req.headers().get(AUTHORIZATION), peer).await,
    };
    let mut r = match verdict {
        Auth::Passed => handle(state, req),
        Auth::Denied => {
            let mut r = respond(StatusCode::UNAUTHORIZED, TEXT, "Unauthorized\n");
            r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            r
        }
        Auth::Throttled => {
            state.auth_throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut r = respond(
                StatusCode::TOO_MANY_REQUESTS,
                TEXT,
                "Too many failed logins from this address, or too many waiting: try again in a minute\n",
            );
            r.headers_mut().insert("retry-after", HeaderValue::from_static("60"));
            r
        }
    };
    for (k, v) in &loaded.headers {
        r.headers_mut().insert(k.clone(), v.clone());
    }
    r
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Answers one request from the published state. Pure over its input (the body is never
/// read), so it can be driven without a socket, as the fuzzer does.
pub fn handle<B>(state: &State, req: Request<B>) -> Response<Full<Bytes>> {
    let too_big = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_REQUEST_BYTES);
    if too_big {
        return respond(StatusCode::PAYLOAD_TOO_LARGE, TEXT, "request body too large\n");
    }
    let (path, query) = crate::netdata::path_and_query(req.uri().path(), req.uri().query());
    let path = path.as_str();
    let metrics = path == state.telemetry_path();
    let api = path.strip_prefix("/api/v1/").filter(|e| crate::netdata::serves(e));
    let known = metrics
        || api.is_some()
        || matches!(path, "/" | "/-/healthy" | "/-/ready" | "/api/v1/alarms" | "/dashboard.js" | "/failures");
    if !known {
        return respond(StatusCode::NOT_FOUND, TEXT, "404 page not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let head = req.method() == Method::HEAD;
    match path {
        _ if metrics => {
            let gzip = accepts_gzip(&req);
            // HEAD renders nothing: the headers are all it gets.
            let body = if head { Bytes::new() } else { state.metrics_body(gzip) };
            let mut r = respond(StatusCode::OK, crate::CONTENT_TYPE, body);
            r.headers_mut().insert(VARY, HeaderValue::from_static("Accept-Encoding"));
            if gzip {
                r.headers_mut().insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            r
        }
        "/" => respond(StatusCode::OK, "text/html; charset=utf-8", crate::landing::page(state)),
        "/dashboard.js" => {
            respond(StatusCode::OK, "application/javascript; charset=utf-8", crate::landing::SCRIPT)
        }
        _ if api.is_some() => {
            let endpoint = api.unwrap_or("");
            match crate::netdata::answer(state, endpoint, &query) {
                Some((status, content_type, body)) => {
                    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                    let mut r = respond(status, content_type, if head { String::new() } else { body });
                    // As Netdata: any page may query it, and nothing is cached.
                    r.headers_mut().insert("access-control-allow-origin", HeaderValue::from_static("*"));
                    r.headers_mut().insert(
                        "cache-control",
                        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
                    );
                    r
                }
                None => respond(StatusCode::NOT_FOUND, TEXT, "404 page not found\n"),
            }
        }
        "/failures" => match state.latest() {
            Some(p) => respond(StatusCode::OK, "application/json", crate::probes::failures_json(&p)),
            None => respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "Not ready: no recent sample\n"),
        },
        "/-/healthy" if state.is_healthy() => respond(StatusCode::OK, TEXT, "Healthy\n"),
        "/-/healthy" => {
            respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "Unhealthy: the sampler has stopped\n")
        }
        "/-/ready" if state.is_ready() => respond(StatusCode::OK, TEXT, "Ready\n"),
        "/-/ready" => respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "Not ready: no recent sample\n"),
        _ => {
            let all = query.split('&').any(|p| p == "all" || p.starts_with("all="));
            match state.latest() {
                // Built on request from the alerts the last evaluation left, not every tick.
                Some(p) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    let boards: Vec<&ipcwatch_alerts::Board> =
                        p.namespaces.iter().map(|n| &*n.published.alerts).collect();
                    respond(
                        StatusCode::OK,
                        "application/json",
                        ipcwatch_alerts::alarms_json(&boards, all, now),
                    )
                }
                None => respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "Not ready: no recent sample\n"),
            }
        }
    }
}

/// Whether the client takes gzip (`Accept-Encoding: gzip`, not with `q=0`).
fn accepts_gzip<B>(req: &Request<B>) -> bool {
    req.headers().get_all(ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let q_zero =
                parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f64>().is_ok_and(|q| q <= 0.0)));
            name.eq_ignore_ascii_case("gzip") && !q_zero
        })
    })
}
