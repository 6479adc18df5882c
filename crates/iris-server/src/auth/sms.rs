//! One-time codes by SMS through an HTTP gateway (`[sms]`): one request per code, the body made
//! from a template with `{phone}` and `{code}`, basic or bearer credentials, retried with
//! exponential backoff (and jitter) on 5xx, 429, timeouts and connection errors; any other
//! answer is final. When every attempt failed the client gets `CODE_DELIVERY_FAILED`.
//!
//! **Invariant:** the code appears in the request body only: never in a log line, an error or a
//! metric. Log lines name the phone by its last two digits.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::http::{header, Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::codes::{phone_tail, CodeSendError, CodeSender};
use crate::client_tls::{self, ClientTlsError};
use crate::config::SmsConfig;
use crate::metrics::Metrics;

/// Why the gateway client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SmsSetupError {
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {why}")]
    Ca {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        why: String,
    },
    /// The system's root certificates could not be loaded and no `ca_path` was given.
    #[error("no system root certificates (set sms.ca_path): {0}")]
    NoRoots(String),
    /// The TLS client could not be built.
    #[error("TLS client: {0}")]
    Client(String),
    /// `sms.url` is not a usable http(s) URL.
    #[error("sms.url: {0}")]
    Url(String),
}

impl From<ClientTlsError> for SmsSetupError {
    fn from(e: ClientTlsError) -> Self {
        match e {
            ClientTlsError::Ca { path, why } => Self::Ca { path, why },
            ClientTlsError::NoRoots(why) => Self::NoRoots(why),
            ClientTlsError::Client(why) => Self::Client(why),
        }
    }
}

/// The outcome of one attempt.
enum Attempt {
    /// 2xx: the gateway took the message.
    Delivered,
    /// Worth another try (5xx, 429, timeout, connection error); says what happened.
    Retry(String),
    /// Final: another try would get the same answer (4xx other than 429).
    Refused(String),
}

/// The [`CodeSender`] for an HTTP SMS gateway.
pub struct HttpSmsSender {
    config: SmsConfig,
    target: Target,
    /// TLS to the gateway (`https://` URLs), trusting `ca_path` or the system's roots.
    tls: TlsConnector,
    metrics: Arc<Metrics>,
}

/// Where requests go, taken apart once from `sms.url`.
#[derive(Debug, Clone)]
struct Target {
    https: bool,
    /// Host to connect to and to verify the certificate for (IPv6 without brackets).
    host: String,
    port: u16,
    /// The `Host` header.
    authority: String,
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, SmsSetupError> {
        let bad = |why: &str| SmsSetupError::Url(why.to_owned());
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials go in sms.basic_user / basic_password, not in the URL"));
        }
        Ok(Self {
            https,
            host: authority.host().trim_start_matches('[').trim_end_matches(']').to_owned(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            path_and_query: uri.path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned()),
        })
    }
}

impl HttpSmsSender {
    /// A sender for the gateway `config` describes (validated by `Config::validate`).
    pub fn new(config: SmsConfig, metrics: Arc<Metrics>) -> Result<Self, SmsSetupError> {
        let target = Target::parse(&config.url)?;
        // A plain-HTTP gateway without a CA file needs no roots (its TLS client is never used).
        let roots = if config.ca_path.is_some() || target.https {
            client_tls::roots(config.ca_path.as_deref())?
        } else {
            rustls::RootCertStore::empty()
        };
        let tls = client_tls::config(roots)?;
        Ok(Self { config, target, tls: TlsConnector::from(Arc::new(tls)), metrics })
    }

    /// The request body for one code.
    fn body(&self, phone: &str, code: &str) -> String {
        let ty = self.config.content_type.to_ascii_lowercase();
        let escape: fn(&str) -> String = if ty.contains("json") {
            json_escape
        } else if ty.starts_with("application/x-www-form-urlencoded") {
            form_escape
        } else {
            str::to_owned
        };
        self.config.body_template.replace("{phone}", &escape(phone)).replace("{code}", &escape(code))
    }

    /// One request, bounded by `timeout_ms` from connect to status line, classified.
    async fn attempt(&self, body: &str) -> Attempt {
        let timeout = Duration::from_millis(self.config.timeout_ms);
        match tokio::time::timeout(timeout, self.post(body)).await {
            Err(_) => Attempt::Retry("gateway timed out".into()),
            Ok(Err(why)) => Attempt::Retry(format!("gateway unreachable: {why}")),
            Ok(Ok(status)) if status.is_success() => Attempt::Delivered,
            Ok(Ok(status)) if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
                Attempt::Retry(format!("gateway answered {status}"))
            }
            Ok(Ok(status)) => Attempt::Refused(format!("gateway answered {status}")),
        }
    }

    /// Connects (TLS for `https://`), sends one request and returns the answer's status. One
    /// connection per code: codes are rare, and nothing is left open between them.
    async fn post(&self, body: &str) -> Result<StatusCode, String> {
        let t = &self.target;
        let tcp = TcpStream::connect((t.host.as_str(), t.port)).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let request = self.request(body).map_err(|e| e.to_string())?;
        if !t.https {
            return exchange(tcp, request).await;
        }
        let name = ServerName::try_from(t.host.clone()).map_err(|e| e.to_string())?;
        let tls = self.tls.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
        exchange(tls, request).await
    }

    fn request(&self, body: &str) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
        let method = if self.config.method == "PUT" { Method::PUT } else { Method::POST };
        let mut request = Request::builder()
            .method(method)
            .uri(&self.target.path_and_query)
            .header(header::HOST, &self.target.authority)
            .header(header::CONTENT_TYPE, &self.config.content_type)
            .header(header::USER_AGENT, "iris")
            .header(header::CONNECTION, "close");
        if let (Some(user), Some(password)) = (&self.config.basic_user, &self.config.basic_password) {
            request =
                request.header(header::AUTHORIZATION, format!("Basic {}", B64.encode(format!("{user}:{password}"))));
        }
        if let Some(token) = &self.config.bearer_token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        request.body(Full::new(Bytes::from(body.to_owned())))
    }

    /// The wait before retry number `retry` (1-based): the initial backoff doubled each time,
    /// capped, then drawn between half and all of it so retries from many nodes spread out.
    fn backoff(&self, retry: u32) -> Duration {
        let full = self
            .config
            .backoff_initial_ms
            .saturating_mul(1u64 << retry.saturating_sub(1).min(20))
            .min(self.config.backoff_max_ms);
        Duration::from_millis(rand::rng().random_range(full / 2..=full))
    }
}

#[async_trait::async_trait]
impl CodeSender for HttpSmsSender {
    async fn send(&self, phone: &str, code: &str) -> Result<(), CodeSendError> {
        let body = self.body(phone, code);
        let phone_tail = phone_tail(phone);
        let mut last = String::new();
        for attempt in 1..=self.config.attempts_max {
            if attempt > 1 {
                tokio::time::sleep(self.backoff(attempt - 1)).await;
            }
            match self.attempt(&body).await {
                Attempt::Delivered => {
                    self.metrics.sms_requests.get_or_create(&vec![("result", "ok")]).inc();
                    tracing::info!(%phone_tail, attempt, "one-time code handed to the SMS gateway");
                    return Ok(());
                }
                Attempt::Refused(why) => {
                    self.metrics.sms_requests.get_or_create(&vec![("result", "failed")]).inc();
                    tracing::warn!(%phone_tail, attempt, %why, "the SMS gateway refused the code; not retried");
                    return Err(CodeSendError { why, attempts: attempt });
                }
                Attempt::Retry(why) => {
                    tracing::info!(%phone_tail, attempt, %why, "SMS gateway attempt failed");
                    last = why;
                    if attempt < self.config.attempts_max {
                        self.metrics.sms_requests.get_or_create(&vec![("result", "retried")]).inc();
                    }
                }
            }
        }
        self.metrics.sms_requests.get_or_create(&vec![("result", "failed")]).inc();
        tracing::warn!(%phone_tail, attempts = self.config.attempts_max, why = %last, "the SMS gateway did not take the code");
        Err(CodeSendError { why: last, attempts: self.config.attempts_max })
    }
}

/// Sends `request` over `io` (HTTP/1.1) and returns the answer's status; the body is not read.
async fn exchange<S>(io: S, request: Request<Full<Bytes>>) -> Result<StatusCode, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| e.to_string())?;
    let connection = tokio::spawn(connection);
    let answer = sender.send_request(request).await.map_err(|e| e.to_string());
    connection.abort();
    Ok(answer?.status())
}

/// `s` as the inside of a JSON string.
fn json_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).expect("a string serializes");
    quoted[1..quoted.len() - 1].to_owned()
}

/// `s` form-encoded (`+` is `%2B`, as a phone number needs).
fn form_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(template: &str, content_type: &str) -> HttpSmsSender {
        let config = SmsConfig {
            url: "http://127.0.0.1:9/sms".into(),
            method: "POST".into(),
            body_template: template.into(),
            content_type: content_type.into(),
            basic_user: None,
            basic_password: None,
            bearer_token: None,
            ca_path: None,
            timeout_ms: 1000,
            attempts_max: 3,
            backoff_initial_ms: 100,
            backoff_max_ms: 300,
        };
        HttpSmsSender::new(config, Arc::new(Metrics::new())).unwrap()
    }

    #[test]
    fn bodies_are_escaped_for_their_content_type() {
        // Proves: the template's placeholders are filled safely for JSON and form bodies.
        let json = sender(r#"{"to":"{phone}","text":"Your code: {code}"}"#, "application/json");
        assert_eq!(json.body("+15550001", "12\"34"), r#"{"to":"+15550001","text":"Your code: 12\"34"}"#);
        let form = sender("To={phone}&Body=Code+{code}", "application/x-www-form-urlencoded");
        assert_eq!(form.body("+15550001", "123456"), "To=%2B15550001&Body=Code+123456");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter() {
        // Proves: retry waits grow exponentially, never past backoff_max_ms, never below half.
        let s = sender("{code}", "text/plain");
        for _ in 0..50 {
            assert!((50..=100).contains(&(s.backoff(1).as_millis() as u64)));
            assert!((100..=200).contains(&(s.backoff(2).as_millis() as u64)));
            assert!((150..=300).contains(&(s.backoff(3).as_millis() as u64)));
            assert!((150..=300).contains(&(s.backoff(40).as_millis() as u64)));
        }
    }
}
