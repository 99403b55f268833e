//! `concoord local`: a ready cluster on 127.0.0.1 for trying ConCoord out, in one process.

use super::{ReplicaConfig, RuntimeError, Timing, start_replica};

/// Starts `replicas` replicas on 127.0.0.1 from `port` (the first founds the group, the
/// others join through it) and, with `dns`, a nameserver for the group; prints how to use
/// them, and runs until Ctrl-C.
pub async fn run_local(
    replicas: usize,
    port: u16,
    object: Option<String>,
    dns: Option<crate::dns::DnsSettings>,
) -> Result<(), RuntimeError> {
    if replicas == 0 {
        return Err(RuntimeError::Other("--replicas must be at least 1".into()));
    }
    let dns_error = |e: crate::dns::DnsError| RuntimeError::Other(e.to_string());
    let dns_sockets = match &dns {
        Some(settings) => Some(crate::dns::bind(settings).await.map_err(dns_error)?),
        None => None,
    };
    let object = object.unwrap_or_else(|| "counter".to_string());
    let mut tasks = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..replicas {
        let p = port
            .checked_add(i as u16)
            .ok_or_else(|| RuntimeError::Other(format!("port {port} + {i} is out of range")))?;
        let cfg = ReplicaConfig {
            object_path: Vec::new(),
            object: Some(object.clone()),
            addr: "127.0.0.1".into(),
            port: p,
            bootstrap: (i > 0).then(|| format!("127.0.0.1:{port}")),
            timing: Timing::default(),
            data_dir: None,
            allow_fault_injection: false,
            dns: None,
            advertise_ip: None,
            tls: None,
            auth_file: None,
            token: None,
        };
        addrs.push(cfg.advertised());
        tasks.push(start_replica(cfg).await?);
    }
    let nameserver = match (&dns, dns_sockets, tasks.first()) {
        (Some(settings), Some(sockets), Some(first)) => Some(
            crate::dns::start(settings, sockets, first)
                .await
                .map_err(dns_error)?,
        ),
        _ => None,
    };
    let list = addrs.join(", ");
    let short = object.rsplit('.').next().unwrap_or(&object).to_lowercase();
    println!("ConCoord cluster of {replicas} replicas is up: {list}");
    println!();
    println!("Try it from another terminal:");
    println!("  concoord call \"{list}\" {short} increment");
    println!("  concoord call \"{list}\" {short} getvalue");
    println!("  concoord status \"{list}\"");
    if let (Some(ns), Some(settings)) = (&nameserver, &dns) {
        let (ip, dns_port, domain) = (ns.addr.ip(), ns.addr.port(), &settings.domain);
        println!();
        println!("Its nameserver answers for {domain} on {ip}:{dns_port} (UDP and TCP):");
        println!("  dig @{ip} -p {dns_port} -t srv _concoord._tcp.{domain}");
        println!("  dig @{ip} -p {dns_port} -t txt {domain}");
        println!("  concoord call --dns-server {ip}:{dns_port} {domain} {short} getvalue");
    }
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
