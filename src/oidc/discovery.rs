//! Discovery: the provider's metadata and signing keys, fetched in the
//! background until it succeeds (waiting 1 s, doubling up to 60 s between
//! attempts), then again every hour. A failed re-discovery keeps what the
//! last one found.

use std::sync::{Arc, Weak};
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthUrl, DiscoveryError, IssuerUrl, JsonWebKeySetUrl,
    ProviderMetadata, TokenUrl,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::Inner;
use super::keys::{KeySet, discovery_error};
use super::transport::Transport;

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
const REDISCOVER: Duration = Duration::from_secs(60 * 60);

const WELL_KNOWN: &str = ".well-known/openid-configuration";

/// Metadata from RP-Initiated, Back-Channel and Front-Channel Logout.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct LogoutMetadata {
    end_session_endpoint: Option<url::Url>,
    #[serde(default)]
    backchannel_logout_supported: bool,
    #[serde(default)]
    frontchannel_logout_supported: bool,
}

impl AdditionalProviderMetadata for LogoutMetadata {}

type Metadata = ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// What discovery found, apart from the keys (see [`super::keys`]).
#[derive(Clone, Debug)]
pub(crate) struct Provider {
    pub(crate) issuer: IssuerUrl,
    pub(crate) authorization_endpoint: AuthUrl,
    pub(crate) token_endpoint: TokenUrl,
    pub(crate) userinfo_endpoint: Option<url::Url>,
    pub(crate) jwks_uri: JsonWebKeySetUrl,
    pub(crate) end_session_endpoint: Option<url::Url>,
    pub(crate) backchannel_logout_supported: bool,
    pub(crate) frontchannel_logout_supported: bool,
    /// Send the client secret with HTTP Basic rather than in the form.
    pub(crate) secret_basic: bool,
}

impl Provider {
    fn from_metadata(metadata: &Metadata) -> Result<Provider, String> {
        let token_endpoint = metadata
            .token_endpoint()
            .ok_or("the provider has no token endpoint")?;
        let logout = metadata.additional_metadata();
        Ok(Provider {
            issuer: metadata.issuer().clone(),
            authorization_endpoint: metadata.authorization_endpoint().clone(),
            token_endpoint: token_endpoint.clone(),
            userinfo_endpoint: metadata.userinfo_endpoint().map(|u| u.url().clone()),
            jwks_uri: metadata.jwks_uri().clone(),
            end_session_endpoint: logout.end_session_endpoint.clone(),
            backchannel_logout_supported: logout.backchannel_logout_supported,
            frontchannel_logout_supported: logout.frontchannel_logout_supported,
            secret_basic: secret_basic(metadata.token_endpoint_auth_methods_supported()),
        })
    }
}

/// Basic unless the provider lists `client_secret_post` without
/// `client_secret_basic`; an absent list means basic (Discovery 1.0).
fn secret_basic(methods: Option<&Vec<CoreClientAuthMethod>>) -> bool {
    methods.is_none_or(|methods| {
        methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
            || !methods.contains(&CoreClientAuthMethod::ClientSecretPost)
    })
}

/// Fetch the metadata and keys once. `known` is the issuer a previous
/// discovery found, tried first.
pub(crate) async fn discover(
    transport: &Transport,
    discovery_url: &url::Url,
    known: Option<IssuerUrl>,
) -> Result<(Provider, KeySet), String> {
    let http = |request| transport.send(request);
    let mut mismatch = String::from("no issuer to try");
    for issuer in known.into_iter().chain(issuers(discovery_url)) {
        match Metadata::discover_async(issuer, &http).await {
            Ok(metadata) => {
                let provider = Provider::from_metadata(&metadata)?;
                return Ok((provider, KeySet::from_core(metadata.jwks().clone())));
            }
            // The issuer in the document is not this spelling; try the next.
            Err(DiscoveryError::Validation(reason)) => mismatch = reason,
            Err(e) => return Err(discovery_error(&e)),
        }
    }
    Err(mismatch)
}

/// The issuers a discovery URL may belong to. It names the document
/// (`<issuer>/.well-known/openid-configuration`, as in the Python
/// project) or the issuer itself. The document's issuer must match
/// exactly, and issuers are written with and without a trailing slash,
/// so both are tried.
fn issuers(discovery_url: &url::Url) -> Vec<IssuerUrl> {
    let mut url = discovery_url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let text = url.as_str();
    let base = text.strip_suffix(WELL_KNOWN).unwrap_or(text);
    let base = base.trim_end_matches('/');
    [base.to_string(), format!("{base}/")]
        .into_iter()
        .filter_map(|issuer| IssuerUrl::new(issuer).ok())
        .collect()
}

/// Discover in the background until `inner` is dropped.
pub(super) fn spawn(inner: Weak<Inner>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::error!("no async runtime; the identity provider will not be discovered");
        return;
    };
    runtime.spawn(run(inner));
}

async fn run(inner: Weak<Inner>) {
    let mut failures: u32 = 0;
    let mut retry = FIRST_RETRY;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let wait = match strong.rediscover().await {
            Ok(()) => {
                failures = 0;
                retry = FIRST_RETRY;
                REDISCOVER
            }
            Err(reason) => {
                failures += 1;
                warn!(
                    attempt = failures,
                    retry_in_s = retry.as_secs(),
                    %reason,
                    "identity provider discovery failed"
                );
                let wait = retry;
                retry = (retry * 2).min(MAX_RETRY);
                wait
            }
        };
        drop(strong);
        tokio::time::sleep(wait).await;
    }
}

impl Inner {
    /// One discovery; on success the provider and keys are replaced.
    async fn rediscover(&self) -> Result<(), String> {
        let Some(transport) = &self.transport else {
            return Err("no HTTP client".into());
        };
        let previous = self.provider();
        let known = previous.as_ref().map(|p| p.issuer.clone());
        let (provider, keys) = discover(transport, &self.settings.discovery_url, known).await?;

        if previous.is_none_or(|p| p.issuer != provider.issuer) {
            info!(
                issuer = %provider.issuer.as_str(),
                backchannel_logout = provider.backchannel_logout_supported,
                frontchannel_logout = provider.frontchannel_logout_supported,
                end_session = provider.end_session_endpoint.is_some(),
                "identity provider discovered"
            );
        } else {
            debug!("identity provider metadata refreshed");
        }
        self.keys.replace(Arc::new(keys));
        self.set_provider(provider);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spellings(url: &str) -> Vec<String> {
        let url = url::Url::parse(url).unwrap();
        issuers(&url)
            .iter()
            .map(|i| i.as_str().to_string())
            .collect()
    }

    #[test]
    fn the_issuer_is_the_discovery_url_without_the_document_path() {
        let both = [
            "https://id.example/realms/a",
            "https://id.example/realms/a/",
        ];
        assert_eq!(
            spellings("https://id.example/realms/a/.well-known/openid-configuration"),
            both
        );
        assert_eq!(spellings("https://id.example/realms/a"), both);
        assert_eq!(spellings("https://id.example/realms/a/"), both);
        assert_eq!(
            spellings("https://id.example/.well-known/openid-configuration"),
            ["https://id.example", "https://id.example/"]
        );
    }

    #[test]
    fn the_secret_goes_in_the_form_only_when_basic_is_not_offered() {
        use CoreClientAuthMethod::{ClientSecretBasic, ClientSecretPost, PrivateKeyJwt};
        assert!(secret_basic(None));
        assert!(secret_basic(Some(&vec![
            ClientSecretBasic,
            ClientSecretPost
        ])));
        assert!(secret_basic(Some(&vec![PrivateKeyJwt])));
        assert!(!secret_basic(Some(&vec![ClientSecretPost])));
    }
}
