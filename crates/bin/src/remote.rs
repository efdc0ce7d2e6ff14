//! What every command that talks to a running control plane shares: where it is and how to sign.

use crate::DataDirArg;
use anyhow::{bail, Context};
use berth_client::Client;
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// The control plane to talk to.
    #[arg(
        long,
        env = "BERTH_ENDPOINT",
        default_value = "http://127.0.0.1:7601",
        global = true
    )]
    pub endpoint: String,
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Profile of DATA_DIR/credentials to sign with (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY win if set).
    #[arg(long, default_value = "berth", global = true)]
    pub profile: String,
    #[arg(long, env = "BERTH_REGION", default_value = "us-east-1", global = true)]
    pub region: String,
}

impl RemoteArgs {
    fn credentials(&self) -> anyhow::Result<(String, String)> {
        if let (Ok(id), Ok(secret)) = (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            return Ok((id, secret));
        }
        let path = self.data_dir.resolve().join("credentials");
        match berth_auth::read_credentials_profile(&path, &self.profile)
            .with_context(|| format!("reading {}", path.display()))?
        {
            Some(pair) => Ok(pair),
            None => bail!(
                "no profile {:?} in {}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
                self.profile,
                path.display()
            ),
        }
    }

    /// A signed client for the control plane.
    pub fn client(&self) -> anyhow::Result<Client> {
        let (id, secret) = self.credentials()?;
        Ok(Client::new(&self.endpoint, &self.region, &id, &secret)?)
    }
}
