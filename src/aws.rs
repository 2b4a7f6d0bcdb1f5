//! Shared AWS SDK configuration: the standard credential chain and region
//! (aws-config), an endpoint override for an emulator, and the SDK's
//! standard retry mode (exponential backoff with jitter on throttling and
//! 5xx).

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;

/// Where and how the AWS clients connect.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// Endpoint override (an emulator such as `moto_server`); `None` = AWS.
    pub endpoint_url: Option<String>,
    /// Region; `None` = the standard chain (AWS_REGION, profile, IMDS).
    pub region: Option<String>,
    /// Fixed credentials (an emulator); `None` = the standard chain.
    pub static_credentials: Option<(String, String)>,
    /// Attempts per call, including the first (SDK standard retry mode).
    pub max_attempts: u32,
}

impl AwsSettings {
    /// Settings for an emulator at `url` (fixed test credentials).
    pub fn emulator(url: &str) -> Self {
        Self {
            endpoint_url: Some(url.to_owned()),
            region: Some("us-east-1".into()),
            static_credentials: Some(("testing".into(), "testing".into())),
            max_attempts: 4,
        }
    }

    /// Load the SDK configuration these settings describe.
    pub async fn load(&self) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(self.max_attempts.max(1)));
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some((id, secret)) = &self.static_credentials {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                id,
                secret,
                None,
                None,
                "forescale-static",
            ));
        }
        loader.load().await
    }
}
