//! The HTTP client under the S3 object store: hyper's pooled client with hyper-rustls (both
//! already in the build, for the server side and push), so object_store needs neither reqwest
//! nor a second TLS stack. `https://` endpoints (a public S3, R2, B2) are verified against
//! `media.s3_ca_file` or the system's roots (`client_tls`); `http://` ones (a Garage or MinIO
//! inside the cluster's network) go in the clear.

use std::time::Duration;

use async_trait::async_trait;
use http_body_util::BodyExt;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector as HyperHttp;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody, HttpResponse, HttpResponseBody,
    HttpService,
};
use object_store::ClientOptions;
use tokio_rustls::rustls;

/// Longest one S3 request may take before it is failed (and retried by object_store).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes object_store's S3 client speak through hyper, with TLS for `https://` endpoints.
#[derive(Debug, Clone)]
pub struct HyperConnector {
    tls: rustls::ClientConfig,
}

impl HyperConnector {
    /// A connector verifying `https://` endpoints with `tls`.
    pub fn new(tls: rustls::ClientConfig) -> Self {
        Self { tls }
    }
}

impl HttpConnector for HyperConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let mut http = HyperHttp::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build::<_, HttpRequestBody>(https);
        Ok(HttpClient::new(HyperService(client)))
    }
}

#[derive(Debug)]
struct HyperService(Client<HttpsConnector<HyperHttp>, HttpRequestBody>);

#[async_trait]
impl HttpService for HyperService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = match tokio::time::timeout(REQUEST_TIMEOUT, self.0.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let kind = if e.is_connect() { HttpErrorKind::Connect } else { HttpErrorKind::Request };
                return Err(HttpError::new(kind, e));
            }
            Err(elapsed) => return Err(HttpError::new(HttpErrorKind::Timeout, elapsed)),
        };
        let (parts, body) = response.into_parts();
        let body = body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e));
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}
