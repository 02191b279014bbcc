//! What the OIDC tests share: settings, signing keys from `testdata/`,
//! and a small identity provider on loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::prelude::{BASE64_STANDARD, Engine};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::config::OidcConfig;
use crate::oidc::discovery::Provider;
use crate::oidc::keys::KeySet;
use crate::secret::Secret;

pub(crate) const CLIENT_ID: &str = "devicepass";
pub(crate) const CLIENT_SECRET: &str = "client-secret";
pub(crate) const API_AUDIENCE: &str = "devicepass-api";

/// Settings for a provider at `issuer`, with the defaults of the
/// configuration and a confidential client.
pub(crate) fn config(issuer: &str) -> OidcConfig {
    let list = |names: &str| names.split(',').map(str::to_string).collect();
    OidcConfig {
        discovery_url: url(&format!("{issuer}/.well-known/openid-configuration")),
        client_id: CLIENT_ID.into(),
        client_secret: Some(Secret::new(CLIENT_SECRET.into())),
        public_url: url("https://dp.example.org/dp"),
        scope: list("openid,email,profile"),
        claim_email: "email".into(),
        claim_email_verified: Some("email_verified".into()),
        claim_username: "preferred_username".into(),
        claims_from_profile: false,
        required_claim: None,
        required_claim_value: None,
        group_membership: None,
        group_claim: "groups".into(),
        admin_group: None,
        api_audience: API_AUDIENCE.into(),
        algorithms: list("RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,EdDSA"),
    }
}

pub(crate) fn url(text: &str) -> url::Url {
    url::Url::parse(text).unwrap()
}

/// A signing key from `testdata/` (made with openssl for these tests
/// only) and the key id it is published under.
pub(crate) struct TestKey {
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    encoding: EncodingKey,
}

pub(crate) fn rsa_key() -> TestKey {
    let der = der(include_str!("../testdata/rsa.pem"));
    TestKey::new("rsa-1", Algorithm::RS256, EncodingKey::from_rsa_der(&der))
}

pub(crate) fn ec_key_a() -> TestKey {
    let der = der(include_str!("../testdata/ec-a.pem"));
    TestKey::new("ec-a", Algorithm::ES256, EncodingKey::from_ec_der(&der))
}

pub(crate) fn ec_key_b() -> TestKey {
    let der = der(include_str!("../testdata/ec-b.pem"));
    TestKey::new("ec-b", Algorithm::ES256, EncodingKey::from_ec_der(&der))
}

fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    BASE64_STANDARD.decode(body).unwrap()
}

impl TestKey {
    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey) -> TestKey {
        TestKey {
            kid: kid.into(),
            alg,
            encoding,
        }
    }

    /// The same key published under another id.
    pub(crate) fn renamed(self, kid: &str) -> TestKey {
        TestKey {
            kid: kid.into(),
            ..self
        }
    }

    /// The public key as a JWK.
    pub(crate) fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        serde_json::to_value(jwk).unwrap()
    }

    pub(crate) fn sign(&self, claims: &Value) -> String {
        self.sign_with(self.header(), claims)
    }

    pub(crate) fn header(&self) -> Header {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header
    }

    pub(crate) fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

pub(crate) fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

pub(crate) fn key_set(keys: &[&TestKey]) -> KeySet {
    KeySet::from_json(jwks(keys).to_string().as_bytes()).unwrap()
}

/// The provider state discovery would find at `issuer`.
pub(crate) fn provider(issuer: &str) -> Provider {
    Provider {
        issuer: openidconnect::IssuerUrl::new(issuer.into()).unwrap(),
        authorization_endpoint: openidconnect::AuthUrl::new(format!("{issuer}/authorize")).unwrap(),
        token_endpoint: openidconnect::TokenUrl::new(format!("{issuer}/token")).unwrap(),
        userinfo_endpoint: Some(url(&format!("{issuer}/userinfo"))),
        jwks_uri: openidconnect::JsonWebKeySetUrl::new(format!("{issuer}/jwks")).unwrap(),
        end_session_endpoint: Some(url(&format!("{issuer}/logout"))),
        backchannel_logout_supported: true,
        frontchannel_logout_supported: false,
        secret_basic: true,
    }
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// What the fake provider answers, and what it was sent.
pub(crate) struct State {
    /// The issuer it names in its metadata (the tests vary the slash).
    pub(crate) issuer: String,
    pub(crate) jwks: Value,
    pub(crate) jwks_fetches: usize,
    /// Discovery requests to answer 503 before answering properly.
    pub(crate) discovery_failures: usize,
    pub(crate) auth_methods: Value,
    pub(crate) token_answer: (u16, Value),
    pub(crate) token_requests: Vec<Sent>,
    pub(crate) userinfo_answer: (u16, Value),
    pub(crate) userinfo_tokens: Vec<String>,
}

/// A request the fake provider received.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) form: HashMap<String, String>,
    pub(crate) authorization: Option<String>,
}

/// An identity provider on loopback: discovery, JWKS, token and
/// userinfo endpoints answering from [`State`].
#[derive(Clone)]
pub(crate) struct FakeProvider {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub(crate) base: String,
    state: Arc<Mutex<State>>,
}

impl FakeProvider {
    pub(crate) async fn start(keys: &[&TestKey]) -> FakeProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = State {
            issuer: base.clone(),
            jwks: jwks(keys),
            jwks_fetches: 0,
            discovery_failures: 0,
            auth_methods: json!(["client_secret_basic", "client_secret_post"]),
            token_answer: (500, json!({})),
            token_requests: Vec::new(),
            userinfo_answer: (404, json!({})),
            userinfo_tokens: Vec::new(),
        };
        let fake = FakeProvider {
            base,
            state: Arc::new(Mutex::new(state)),
        };
        tokio::spawn(fake.clone().serve(listener));
        fake
    }

    pub(crate) fn with<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        change(&mut self.state.lock().unwrap())
    }

    pub(crate) fn config(&self) -> OidcConfig {
        config(&self.base)
    }

    async fn serve(self, listener: tokio::net::TcpListener) {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let fake = self.clone();
            let service = hyper::service::service_fn(move |request| {
                let fake = fake.clone();
                async move { Ok::<_, std::convert::Infallible>(fake.answer(request).await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    }

    async fn answer(&self, request: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
        let path = request.uri().path().to_string();
        let header = |name| {
            let value = request.headers().get(name);
            value.map(|v: &http::HeaderValue| v.to_str().unwrap().to_string())
        };
        let authorization = header(http::header::AUTHORIZATION);
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let (status, json) = match path.as_str() {
            "/.well-known/openid-configuration" => self.metadata(),
            "/jwks" => self.with(|s| {
                s.jwks_fetches += 1;
                (200, s.jwks.clone())
            }),
            "/token" => self.with(|s| {
                let form = url::form_urlencoded::parse(&body).into_owned().collect();
                s.token_requests.push(Sent {
                    form,
                    authorization,
                });
                s.token_answer.clone()
            }),
            "/userinfo" => self.with(|s| {
                let token = authorization.unwrap_or_default();
                s.userinfo_tokens
                    .push(token.trim_start_matches("Bearer ").into());
                s.userinfo_answer.clone()
            }),
            _ => (404, json!({})),
        };
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(json.to_string())))
            .unwrap()
    }

    fn metadata(&self) -> (u16, Value) {
        let base = &self.base;
        self.with(|s| {
            if s.discovery_failures > 0 {
                s.discovery_failures -= 1;
                return (503, json!({}));
            }
            let document = json!({
                "issuer": s.issuer,
                "authorization_endpoint": format!("{base}/authorize"),
                "token_endpoint": format!("{base}/token"),
                "userinfo_endpoint": format!("{base}/userinfo"),
                "jwks_uri": format!("{base}/jwks"),
                "end_session_endpoint": format!("{base}/logout"),
                "backchannel_logout_supported": true,
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "token_endpoint_auth_methods_supported": s.auth_methods,
            });
            (200, document)
        })
    }
}
