//! The HTTP client under the S3 object store: hyper's pooled client (already in the build for
//! the server side), so object_store needs neither reqwest nor a second TLS stack. Plain HTTP
//! only: S3 endpoints are reached inside the cluster's network (a Garage node, a MinIO, a TLS
//! terminating proxy in front of a public S3).

use std::time::Duration;

use async_trait::async_trait;
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector as HyperHttp;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody, HttpResponse, HttpResponseBody,
    HttpService,
};
use object_store::ClientOptions;

/// Longest one S3 request may take before it is failed (and retried by object_store).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes object_store's S3 client speak through hyper.
#[derive(Debug, Default, Clone, Copy)]
pub struct HyperConnector;

impl HttpConnector for HyperConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let mut http = HyperHttp::new();
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build::<_, HttpRequestBody>(http);
        Ok(HttpClient::new(HyperService(client)))
    }
}

#[derive(Debug)]
struct HyperService(Client<HyperHttp, HttpRequestBody>);

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
