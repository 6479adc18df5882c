//! Configurations that start and run but quietly fail their users outside dev mode, named in
//! the log at start: one-time codes that reach nobody (or everybody who reads the log), and
//! listeners beyond loopback that speak plaintext. A pure function of the config, so each case
//! is tested without a server; `run` logs what it returns.
//!
//! Knows the config only.

use std::net::SocketAddr;

use crate::config::Config;

/// The warnings `config` deserves at start. `code_sender_given`: the embedder supplied its own
/// code sender (tests, libraries), so `[sms]` is not needed.
pub fn warnings(config: &Config, code_sender_given: bool) -> Vec<String> {
    let mut out = Vec::new();
    if config.dev {
        // Dev mode binds loopback only and logs the fixed code on purpose.
        return out;
    }
    if config.auth.log_codes {
        out.push("auth.log_codes: one-time codes go to the log; whoever reads it can take over any account".into());
    } else if config.sms.is_none() && !code_sender_given {
        out.push(
            "no SMS gateway is configured ([sms]) and auth.log_codes is off: one-time codes reach nobody, so no one \
             can register or log in"
                .into(),
        );
    }
    let http_tls = config.tls.as_ref().is_some_and(|t| t.http);
    let mut plaintext = |addr: SocketAddr, has_tls: bool, what: &str| {
        if !has_tls && !addr.ip().is_loopback() {
            out.push(format!("{what} listens on {addr}, beyond loopback, without TLS"));
        }
    };
    plaintext(
        config.listen,
        config.tls.is_some(),
        "the framed TCP listener (tokens and, without end-to-end encryption, messages in the clear)",
    );
    plaintext(
        config.http,
        http_tls,
        "the HTTP/WebSocket listener (one-time codes and tokens in the clear, unless a proxy in front terminates TLS)",
    );
    if let Some(admin) = config.admin.listen {
        // The admin listener takes the HTTP listener's TLS.
        plaintext(admin, http_tls, "the admin API (its token in the clear)");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::TlsConfig;

    fn prod(edit: impl FnOnce(&mut Config)) -> Vec<String> {
        let mut c = Config { dev: false, ..Config::default() };
        edit(&mut c);
        warnings(&c, false)
    }

    fn public(c: &mut Config) {
        c.listen = "0.0.0.0:7700".parse().unwrap();
        c.http = "0.0.0.0:7701".parse().unwrap();
    }

    fn tls() -> TlsConfig {
        TlsConfig::new(PathBuf::from("cert.pem"), PathBuf::from("key.pem"))
    }

    #[test]
    fn codes_that_reach_nobody_are_named() {
        // Proves: outside dev mode, no [sms] and no auth.log_codes warns that codes reach nobody;
        // log_codes warns that they go to the log instead; a given sender or dev mode is quiet.
        let w = prod(|_| {});
        assert!(w.len() == 1 && w[0].contains("reach nobody"), "{w:?}");
        let w = prod(|c| c.auth.log_codes = true);
        assert!(w.len() == 1 && w[0].contains("auth.log_codes"), "{w:?}");
        let c = Config { dev: false, ..Config::default() };
        assert!(warnings(&c, true).is_empty());
        assert!(warnings(&Config { dev: true, ..Config::default() }, false).is_empty());
    }

    #[test]
    fn plaintext_listeners_beyond_loopback_are_named() {
        // Proves: each listener beyond loopback without TLS is named with its address; [tls]
        // covers TCP, HTTP and admin, `tls.http = false` leaves HTTP and admin plaintext;
        // loopback listeners are never named.
        let named = |w: &[String], what: &str| w.iter().any(|l| l.starts_with(what) && l.contains("0.0.0.0"));
        let w = prod(|c| {
            public(c);
            c.admin.listen = Some("10.0.0.5:7702".parse().unwrap());
        });
        assert!(named(&w, "the framed TCP") && named(&w, "the HTTP/WebSocket"), "{w:?}");
        assert!(w.iter().any(|l| l.starts_with("the admin API") && l.contains("10.0.0.5:7702")), "{w:?}");
        let w = prod(|c| {
            public(c);
            c.tls = Some(tls());
        });
        assert!(!w.iter().any(|l| l.contains("without TLS")), "{w:?}");
        let w = prod(|c| {
            public(c);
            c.admin.listen = Some("10.0.0.5:7702".parse().unwrap());
            c.tls = Some(TlsConfig { http: false, ..tls() });
        });
        let plain: Vec<&String> = w.iter().filter(|l| l.contains("without TLS")).collect();
        assert!(plain.len() == 2 && !named(&w, "the framed TCP"), "{w:?}");
        assert!(!prod(|_| {}).iter().any(|l| l.contains("without TLS")));
    }
}
