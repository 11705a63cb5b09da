use super::*;

fn loaded(yaml: &str) -> Result<Loaded, String> {
    let raw: Raw = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
    parse(raw, Path::new("/nonexistent")).map(|(_, l)| l)
}

#[test]
fn headers_are_limited_to_exporter_toolkits_list() {
    let l = loaded("http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n").unwrap();
    assert_eq!(l.headers.len(), 2);
    let e = loaded("http_server_config:\n  headers:\n    X-Powered-By: me\n").unwrap_err();
    assert_eq!(e, "HTTP header \"X-Powered-By\" can not be configured");
    let e = loaded("http_server_config:\n  headers:\n    X-Frame-Options: allow\n").unwrap_err();
    assert!(e.starts_with("invalid value for X-Frame-Options."), "{e}");
}

#[test]
fn unknown_and_unsupported_keys_are_errors() {
    assert!(loaded("tls_server_config:\n  cert_fil: x\n").unwrap_err().contains("unknown field `cert_fil`"));
    assert_eq!(
        loaded("rate_limit:\n  interval: 1s\n  burst: 20\n").unwrap_err(),
        "rate_limit is not supported by ipcwatch"
    );
    let e = loaded("tls_server_config:\n  cert: x\n  key: y\n  min_version: TLS11\n").unwrap_err();
    assert!(e.contains("TLS11 is not supported") || e.starts_with("cert:"), "{e}");
    let e = loaded("basic_auth_users:\n  alice: plaintext\n").unwrap_err();
    assert!(e.starts_with("basic_auth_users: alice: not a bcrypt hash"), "{e}");
}

#[test]
fn no_certificate_means_plain_http_and_half_a_pair_is_an_error() {
    assert!(loaded("tls_server_config:\n  client_auth_type: NoClientCert\n").unwrap().tls.is_none());
    assert!(loaded("").is_err() || loaded("{}").unwrap().tls.is_none());
    assert_eq!(loaded("tls_server_config:\n  key: x\n").unwrap_err(), "missing cert_file");
    assert_eq!(loaded("tls_server_config:\n  cert: x\n").unwrap_err(), "missing key_file");
}

#[tokio::test]
async fn basic_auth_caches_only_successes() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let users: HashMap<String, String> = [("alice".to_string(), hash)].into();
    let header = |user: &str, pw: &str| {
        use base64::Engine;
        HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        ))
        .unwrap()
    };
    let cache = AuthCache::default();
    let peer = Some(std::net::IpAddr::from([10, 0, 0, 1]));
    assert_eq!(cache.check(&users, Some(&header("alice", "s3cret")), peer).await, Auth::Passed);
    assert_eq!(cache.passed.lock().unwrap().len(), 1, "a success is remembered");
    assert_eq!(cache.check(&users, Some(&header("alice", "s3cret")), peer).await, Auth::Passed);
    assert_eq!(cache.check(&users, Some(&header("alice", "wrong")), peer).await, Auth::Denied);
    assert_eq!(cache.check(&users, Some(&header("mallory", "s3cret")), peer).await, Auth::Denied);
    assert_eq!(cache.check(&users, None, peer).await, Auth::Denied);
    assert_eq!(cache.check(&users, Some(&HeaderValue::from_static("Bearer abc")), peer).await, Auth::Denied);
    assert_eq!(cache.passed.lock().unwrap().len(), 1, "failures are not remembered");
}

#[tokio::test]
async fn an_address_that_fails_too_often_is_throttled_but_a_cached_password_still_passes() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let users: HashMap<String, String> = [("alice".to_string(), hash)].into();
    let header = |pw: &str| {
        use base64::Engine;
        HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("alice:{pw}"))
        ))
        .unwrap()
    };
    let cache = AuthCache::default();
    let (bad, good) =
        (Some(std::net::IpAddr::from([10, 0, 0, 9])), Some(std::net::IpAddr::from([10, 0, 0, 1])));
    assert_eq!(cache.check(&users, Some(&header("s3cret")), good).await, Auth::Passed);
    for _ in 0..MAX_FAILURES {
        assert_eq!(cache.check(&users, Some(&header("wrong")), bad).await, Auth::Denied);
    }
    assert_eq!(cache.check(&users, Some(&header("wrong")), bad).await, Auth::Throttled);
    assert_eq!(cache.check(&users, Some(&header("s3cret")), bad).await, Auth::Passed, "cached: no bcrypt");
    assert_eq!(cache.check(&users, Some(&header("s3cret")), good).await, Auth::Passed);
}
