//! The configuration in the forms the relying party uses: typed client
//! values, the redirect URIs derived from the public URL, and the
//! algorithm allow-list for each verifier.

use std::str::FromStr;

use openidconnect::core::CoreJwsSigningAlgorithm;
use openidconnect::{ClientId, RedirectUrl, Scope};
use tracing::warn;

use super::claims::Rules;
use crate::config::OidcConfig;
use crate::secret::Secret;

pub(crate) struct Settings {
    pub(crate) discovery_url: url::Url,
    pub(crate) client_id: ClientId,
    pub(crate) client_secret: Option<Secret<String>>,
    /// `<public_url>/login`.
    pub(crate) redirect_uri: RedirectUrl,
    /// `<public_url>/`.
    pub(crate) post_logout_uri: url::Url,
    /// Scopes besides `openid`, which openidconnect always sends.
    pub(crate) scopes: Vec<Scope>,
    pub(crate) claims_from_profile: bool,
    pub(crate) rules: Rules,
    pub(crate) api_audience: String,
    /// The allow-list for ID tokens (openidconnect) ...
    pub(crate) id_token_algs: Vec<CoreJwsSigningAlgorithm>,
    /// ... and for logout and access tokens (jsonwebtoken).
    pub(crate) jwt_algs: Vec<jsonwebtoken::Algorithm>,
}

impl Settings {
    pub(crate) fn new(config: &OidcConfig) -> Settings {
        let scopes = config
            .scope
            .iter()
            .filter(|s| s.as_str() != "openid")
            .map(|s| Scope::new(s.clone()))
            .collect();
        Settings {
            discovery_url: config.discovery_url.clone(),
            client_id: ClientId::new(config.client_id.clone()),
            client_secret: config.client_secret.clone(),
            redirect_uri: RedirectUrl::from_url(under(&config.public_url, "login")),
            post_logout_uri: under(&config.public_url, ""),
            scopes,
            claims_from_profile: config.claims_from_profile,
            rules: Rules::new(config),
            api_audience: config.api_audience.clone(),
            id_token_algs: algorithms(&config.algorithms, |name| {
                serde_json::from_value(serde_json::Value::String(name.into())).ok()
            }),
            jwt_algs: algorithms(&config.algorithms, |name| {
                jsonwebtoken::Algorithm::from_str(name).ok()
            }),
        }
    }
}

/// `path` appended to the public URL, which has no trailing slash.
fn under(public_url: &url::Url, path: &str) -> url::Url {
    let mut url = public_url.clone();
    let base = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{base}/{path}"));
    url
}

/// The configured names a library knows. The configuration accepts only
/// names both libraries support, so none should be dropped.
fn algorithms<T>(names: &[String], parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    names
        .iter()
        .filter_map(|name| {
            let parsed = parse(name);
            if parsed.is_none() {
                warn!(algorithm = %name, "signature algorithm not supported; ignored");
            }
            parsed
        })
        .collect()
}
