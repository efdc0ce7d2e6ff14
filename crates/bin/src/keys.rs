//! `berth keys create|list|delete`: access-key management through a running control plane
//! (signed with an admin key, so it works the same against any replica).

use crate::DataDirArg;
use anyhow::{bail, Context};
use berth_client::Client;
use berth_control_plane::admin::TARGET_PREFIX;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    /// The control plane to talk to.
    #[arg(
        long,
        env = "BERTH_ENDPOINT",
        default_value = "http://127.0.0.1:7601",
        global = true
    )]
    endpoint: String,
    #[command(flatten)]
    data_dir: DataDirArg,
    /// Profile of DATA_DIR/credentials to sign with (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY win if set).
    #[arg(long, default_value = "berth", global = true)]
    profile: String,
    #[arg(long, env = "BERTH_REGION", default_value = "us-east-1", global = true)]
    region: String,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Create a key: admin (everything), agent (agent operations), readonly (Describe/List/Get).
    Create {
        #[arg(long, value_parser = ["admin", "agent", "readonly"])]
        role: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List keys (secrets are never shown again).
    List,
    /// Delete a key.
    Delete { access_key_id: String },
}

fn credentials(args: &KeysArgs) -> anyhow::Result<(String, String)> {
    if let (Ok(id), Ok(secret)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok((id, secret));
    }
    let path = args.data_dir.resolve().join("credentials");
    match berth_auth::read_credentials_profile(&path, &args.profile)
        .with_context(|| format!("reading {}", path.display()))?
    {
        Some(pair) => Ok(pair),
        None => bail!(
            "no profile {:?} in {}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            args.profile,
            path.display()
        ),
    }
}

pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    let (id, secret) = credentials(&args)?;
    let client = Client::new(&args.endpoint, &args.region, &id, &secret)?;
    let (op, body) = match &args.command {
        KeysCommand::Create { role, description } => (
            "CreateAccessKey",
            serde_json::json!({"role": role, "description": description}),
        ),
        KeysCommand::List => ("ListAccessKeys", serde_json::json!({})),
        KeysCommand::Delete { access_key_id } => (
            "DeleteAccessKey",
            serde_json::json!({"accessKeyId": access_key_id}),
        ),
    };
    let out = client
        .call("berth", &format!("{TARGET_PREFIX}.{op}"), &body)
        .await?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
