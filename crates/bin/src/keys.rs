//! `berth keys create|list|delete`: access-key management through a running control plane
//! (signed with an admin key, so it works the same against any replica).

use crate::remote::RemoteArgs;
use berth_svc_admin::TARGET_PREFIX;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    #[command(flatten)]
    remote: RemoteArgs,
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

pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
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
