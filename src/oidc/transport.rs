//! HTTP to the identity provider: one reqwest client with redirects off
//! (openidconnect requires it: a redirected token request could leak the
//! code) and short timeouts, and the adapter openidconnect calls it
//! through.
//!
//! A 5xx answer is reported as a transport failure, not handed on as a
//! response: openidconnect would otherwise read it as a refusal, and the
//! caller must tell "the provider is down" from "the provider said no".

use std::future::Future;
use std::sync::Once;
use std::time::Duration;

use openidconnect::{HttpRequest, HttpResponse};

/// Longest a whole request may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    #[error("request failed: {0}")]
    Network(#[from] reqwest::Error),
    #[error("request could not be built: {0}")]
    Build(#[from] http::Error),
    #[error("provider answered {0}")]
    Status(http::StatusCode),
}

#[derive(Clone)]
pub(crate) struct Transport {
    client: reqwest::Client,
}

impl Transport {
    pub(crate) fn new() -> Result<Transport, reqwest::Error> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Ok(Transport { client })
    }

    /// Send a request built by openidconnect. The future owns what it
    /// needs, so `|r| transport.send(r)` is an `AsyncHttpClient`.
    pub(crate) fn send(
        &self,
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, TransportError>> + Send + 'static {
        let client = self.client.clone();
        async move {
            let response = client.execute(request.try_into()?).await?;
            into_http(response).await
        }
    }

    /// GET `url` with a bearer token, for the userinfo endpoint.
    pub(crate) async fn get_with_token(
        &self,
        url: &url::Url,
        token: &str,
    ) -> Result<HttpResponse, TransportError> {
        let request = self
            .client
            .get(url.clone())
            .bearer_auth(token)
            .header(http::header::ACCEPT, "application/json");
        into_http(request.send().await?).await
    }
}

async fn into_http(response: reqwest::Response) -> Result<HttpResponse, TransportError> {
    let status = response.status();
    if status.is_server_error() {
        return Err(TransportError::Status(status));
    }
    let mut builder = http::Response::builder().status(status);
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    Ok(builder.body(response.bytes().await?.to_vec())?)
}

/// reqwest is built without a TLS crypto provider; use aws-lc-rs as the
/// process default. Another part of the program may have installed one
/// already, which is fine.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _already_installed = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}
