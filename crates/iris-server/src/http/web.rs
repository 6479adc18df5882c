//! The web client (`web/`): its built files (`web/dist`, committed) embedded in the binary and
//! served at `/`, so `iris serve` is all a browser needs and nothing is fetched at run time.
//!
//! Owns only the static files: content types, caching (an `ETag` per file and `no-cache`, so a
//! browser revalidates and gets a 304 until the next release changes the bytes) and the page's
//! security headers (a Content-Security-Policy that lets the page load only its own files and
//! talk only to this origin, its HTTP API and `/v1/ws`). The client speaks the documented API
//! like any other client; this module knows nothing of it.
//!
//! These routes are not in the OpenAPI document: they serve a page for people, not an API for
//! programs, and the document describes the API (`openapi.rs`).

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file.
struct Asset {
    /// The URL path it is served at.
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every file of `web/dist`, each at its own path; the page itself at `/`.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../../../web/dist/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../../../web/dist/app.js"),
    },
    Asset {
        path: "/app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../../../web/dist/app.css"),
    },
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../../../../web/dist/favicon.svg"),
    },
    // libolm compiled to WebAssembly (`@towns-protocol/olm`), loaded by app.js for end-to-end
    // encryption: the same formats as vodozemac in the SDK.
    Asset {
        path: "/olm.wasm",
        content_type: "application/wasm",
        bytes: include_bytes!("../../../../web/dist/olm.wasm"),
    },
];

/// The page may load its own scripts, styles and images and connect to its own origin (HTTP
/// and WebSocket); nothing else, and it may not be framed. `wasm-unsafe-eval` lets it compile
/// WebAssembly (libolm, served from here), without allowing `eval` of strings; `blob:` images,
/// voice notes and videos are decrypted media shown or played in the page.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
    img-src 'self' data: blob:; media-src blob:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// The routes of the web client (`GET` and `HEAD` of each file).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(asset.path, get(move |headers: HeaderMap| async move { serve(asset, &headers) }))
    })
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = etag_of(asset.bytes);
    let cached = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex is a valid header"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if asset.path == "/" {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if cached {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    (StatusCode::OK, headers, asset.bytes).into_response()
}

/// A strong validator of the file's bytes (FNV-1a, 64 bits: the files are ours, collisions
/// between two releases of one file are what it must avoid, not an attacker).
fn etag_of(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("\"{hash:016x}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_references_is_embedded() {
        // Proves: index.html loads nothing that is not served from the binary (no CDN, no 404).
        let page = std::str::from_utf8(ASSETS[0].bytes).expect("index.html is UTF-8");
        let referenced: Vec<&str> =
            page.split(['"', '\'']).filter(|s| s.starts_with('/') && !s.starts_with("//")).collect();
        assert!(referenced.len() >= 3, "{referenced:?}");
        for path in referenced {
            assert!(ASSETS.iter().any(|a| a.path == path), "index.html references {path}, which is not embedded");
        }
        assert!(!page.contains("http://") && !page.contains("https://"), "the page loads nothing from elsewhere");
    }

    #[test]
    fn etags_differ_when_bytes_differ() {
        // Proves: a changed file gets a new validator, so browsers do not keep the old one.
        assert_ne!(etag_of(b"a"), etag_of(b"b"));
        assert_eq!(etag_of(b"same"), etag_of(b"same"));
    }
}
