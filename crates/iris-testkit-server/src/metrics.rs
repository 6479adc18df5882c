//! Metrics and health as the operators see them: Prometheus text parsed one sample at a time,
//! and a minimal HTTP GET that needs no client library (it also works against the `iris`
//! binary in another process, and reports a refused connection instead of failing).

/// The value of the sample `series` (name with its labels exactly as exposed, e.g.
/// `iris_handshakes_total{result="ok"}`) in a Prometheus text exposition; 0 when absent
/// (prometheus-client omits label sets never touched).
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().expect("a numeric sample"))
        })
        .unwrap_or(0.0)
}

/// `GET <url>/metrics` as text.
pub async fn scrape_metrics(url: &str) -> String {
    let (status, body) = http_get(url, "/metrics").await;
    assert_eq!(status, 200, "GET /metrics: {body}");
    body
}

/// A minimal `GET` over HTTP/1.0: status and body; status 0 when the server refuses the
/// connection (a test of shutdown or kill -9 asks exactly that).
pub async fn http_get(url: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = url.trim_start_matches("http://");
    let Ok(mut stream) = tokio::net::TcpStream::connect(host).await else { return (0, String::new()) };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut response = Vec::new();
    if stream.read_to_end(&mut response).await.is_err() {
        return (0, String::new());
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}
