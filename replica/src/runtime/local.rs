//! `concoord local`: a ready cluster on 127.0.0.1 for trying ConCoord out, in one process.

use super::{ReplicaConfig, RuntimeError, Timing, start_replica};

/// Starts `replicas` replicas on 127.0.0.1 from `port` (the first founds the group, the
/// others join through it), prints how to use them, and runs until Ctrl-C.
pub async fn run_local(
    replicas: usize,
    port: u16,
    object: Option<String>,
) -> Result<(), RuntimeError> {
    if replicas == 0 {
        return Err(RuntimeError::Other("--replicas must be at least 1".into()));
    }
    let object = object.unwrap_or_else(|| "counter".to_string());
    let mut tasks = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..replicas {
        let p = port
            .checked_add(i as u16)
            .ok_or_else(|| RuntimeError::Other(format!("port {port} + {i} is out of range")))?;
        let cfg = ReplicaConfig {
            object: Some(object.clone()),
            addr: "127.0.0.1".into(),
            port: p,
            bootstrap: (i > 0).then(|| format!("127.0.0.1:{port}")),
            timing: Timing::default(),
            data_dir: None,
        };
        addrs.push(cfg.advertised());
        tasks.push(start_replica(cfg).await?);
    }
    let list = addrs.join(", ");
    let short = object.rsplit('.').next().unwrap_or(&object).to_lowercase();
    println!("ConCoord cluster of {replicas} replicas is up: {list}");
    println!();
    println!("Try it from another terminal:");
    println!("  concoord call \"{list}\" {short} increment");
    println!("  concoord call \"{list}\" {short} getvalue");
    println!("  concoord status \"{list}\"");
    println!();
    println!("Press Ctrl-C to stop.");
    let failed = async {
        for t in tasks {
            if let Err(e) = t.wait().await {
                return e;
            }
        }
        RuntimeError::Other("all replicas stopped".into())
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            println!("\nStopping the local cluster.");
            Ok(())
        }
        e = failed => Err(e),
    }
}
