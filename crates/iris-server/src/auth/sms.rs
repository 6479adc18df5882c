//! One-time codes by SMS through an HTTP gateway (`[sms]`): one request per code, the body made
//! from a template with `{phone}` and `{code}`, basic or bearer credentials, retried with
//! exponential backoff (and jitter) on 5xx, 429, timeouts and connection errors; any other
//! answer is final. When every attempt failed the client gets `CODE_DELIVERY_FAILED`.
//!
//! **Invariant:** the code appears in the request body only: never in a log line, an error or a
//! metric. Log lines name the phone by its last two digits.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::codes::{phone_tail, CodeSendError, CodeSender};
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
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
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
    client: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl HttpSmsSender {
    /// A sender for the gateway `config` describes (validated by `Config::validate`).
    pub fn new(config: SmsConfig, metrics: Arc<Metrics>) -> Result<Self, SmsSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        match &config.ca_path {
            Some(path) => {
                let ca = |why: String| SmsSetupError::Ca { path: path.clone(), why };
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca(e.to_string()))? {
                    roots.add(cert.map_err(|e| ca(e.to_string()))?).map_err(|e| ca(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(ca("no certificate in the file".into()));
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    return Err(SmsSetupError::NoRoots(format!("{:?}", native.errors)));
                }
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| SmsSetupError::Client(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SmsSetupError::Client(e.to_string()))?;
        Ok(Self { config, client, metrics })
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

    async fn attempt(&self, body: &str) -> Attempt {
        let method = if self.config.method == "PUT" { reqwest::Method::PUT } else { reqwest::Method::POST };
        let mut request = self
            .client
            .request(method, &self.config.url)
            .header(reqwest::header::CONTENT_TYPE, &self.config.content_type)
            .body(body.to_owned());
        if let (Some(user), Some(password)) = (&self.config.basic_user, &self.config.basic_password) {
            request = request.basic_auth(user, Some(password));
        }
        if let Some(token) = &self.config.bearer_token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    Attempt::Delivered
                } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    Attempt::Retry(format!("gateway answered {status}"))
                } else {
                    Attempt::Refused(format!("gateway answered {status}"))
                }
            }
            Err(e) if e.is_timeout() => Attempt::Retry("gateway timed out".into()),
            // No URL in the text: it may carry credentials.
            Err(e) => Attempt::Retry(format!("gateway unreachable: {}", e.without_url())),
        }
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
