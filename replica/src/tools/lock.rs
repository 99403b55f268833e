//! `concoord lock ADDRS NAME -- COMMAND`: holds a lock for as long as a command runs, in
//! one client session (as `etcdctl lock NAME -- COMMAND` does). The lock is released when
//! the command exits, and by the lease if this process dies.

use crate::cli::{CliError, LockArgs};
use crate::client::{Client, ClientError, ClientOptions, acquired};
use crate::command::Value;
use std::process::Stdio;

pub async fn run(a: &LockArgs) -> Result<(), CliError> {
    let opts = ClientOptions {
        blocking_timeout: a.timeout,
        ..a.creds.client_options()?
    };
    let client = Client::connect(&a.addrs, opts).await?;
    let outcome = hold_while(&client, a).await;
    // Ending the session releases the lock at once, whatever happened above.
    let _ = client.close().await;
    outcome
}

async fn hold_while(client: &Client, a: &LockArgs) -> Result<(), CliError> {
    let acquired = acquire(client, a).await?;
    if !acquired {
        return Err(CliError::Failed(format!(
            "{} is held by another session",
            a.name
        )));
    }
    let Some((program, args)) = a.command.split_first() else {
        eprintln!("holding {}; Ctrl-C releases it", a.name);
        let _ = tokio::signal::ctrl_c().await;
        return Ok(());
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("CONCOORD_LOCK", &a.name)
        .stdin(Stdio::inherit())
        .spawn()
        .map_err(|e| CliError::Failed(format!("cannot run {program}: {e}")))?;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            // Ctrl-C reaches the command too (same process group): let it finish, then
            // release, rather than dying with the lock held until the lease runs out.
            _ = tokio::signal::ctrl_c() => continue,
        }
    }
    .map_err(|e| CliError::Failed(format!("waiting for {program}: {e}")))?;
    client.call(&a.name, "release", vec![]).await?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(CliError::ChildExit(u8::try_from(code).unwrap_or(1))),
        None => Err(CliError::Failed(format!(
            "{program} was killed by a signal"
        ))),
    }
}

/// Acquires the lock, creating it first (of `--type`) when the group has none of that name.
async fn acquire(client: &Client, a: &LockArgs) -> Result<bool, CliError> {
    let args = if a.no_wait {
        vec![Value::Boolean(false)]
    } else {
        vec![]
    };
    match client.call(&a.name, "acquire", args.clone()).await {
        Err(e) if e.is_remote("NameError") => {
            match client.create(&a.name, &a.type_name, vec![]).await {
                Ok(()) => {}
                // Another client created it meanwhile: fine, it exists now.
                Err(ClientError::Remote { ref message, .. }) if message.contains("exists") => {}
                Err(e) => return Err(e.into()),
            }
            Ok(acquired(&client.call(&a.name, "acquire", args).await?))
        }
        other => Ok(acquired(&other?)),
    }
}
