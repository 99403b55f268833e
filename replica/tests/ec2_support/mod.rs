//! Helpers for the EC2 tests: an SDK client for the moto server the test started, a fake
//! instance metadata service (IMDSv2) on loopback, a proxy in front of moto that answers
//! chosen EC2 actions with an error moto does not emulate (quotas, authorization), and a
//! way to run `concoord ec2 ...` against all of that. Nothing here leaves 127.0.0.1.

#![allow(dead_code)]

#[path = "../moto_support/mod.rs"]
mod moto_support;
pub use moto_support::*;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

pub const BIN: &str = env!("CARGO_BIN_EXE_concoord");

/// A cluster name no other test run uses.
pub fn cluster_name(what: &str) -> String {
    format!("t{}-{what}", rand::random::<u32>())
}

/// An SDK client for moto, as the test's own eyes.
pub fn sdk(endpoint: &str) -> aws_sdk_ec2::Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

/// An AMI moto knows.
pub async fn some_ami(client: &aws_sdk_ec2::Client) -> String {
    let out = client
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .expect("describe moto's images");
    out.images()
        .iter()
        .find_map(|i| i.image_id())
        .expect("moto has an Amazon image")
        .to_string()
}

/// One instance as the test sees it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub id: String,
    pub state: String,
    pub launched: (i64, u32),
    pub instance_type: String,
    pub image_id: String,
    pub tags: BTreeMap<String, String>,
}

/// The instances tagged with `cluster`, in any state, oldest first (then by id).
pub async fn instances(client: &aws_sdk_ec2::Client, cluster: &str) -> Vec<Seen> {
    let out = client
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:concoord:cluster")
                .values(cluster)
                .build(),
        )
        .send()
        .await
        .expect("describe instances");
    let mut seen: Vec<Seen> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| Seen {
            id: i.instance_id().unwrap_or_default().to_string(),
            state: i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default(),
            launched: i
                .launch_time()
                .map(|t| (t.secs(), t.subsec_nanos()))
                .unwrap_or((i64::MAX, 0)),
            instance_type: i
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            image_id: i.image_id().unwrap_or_default().to_string(),
            tags: i
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect(),
        })
        .collect();
    seen.sort_by(|a, b| (a.launched, &a.id).cmp(&(b.launched, &b.id)));
    seen
}

/// Only the pending and running ones.
pub async fn live_instances(client: &aws_sdk_ec2::Client, cluster: &str) -> Vec<Seen> {
    instances(client, cluster)
        .await
        .into_iter()
        .filter(|i| i.state == "pending" || i.state == "running")
        .collect()
}

/// Tags one instance.
pub async fn tag(client: &aws_sdk_ec2::Client, id: &str, key: &str, value: &str) {
    client
        .create_tags()
        .resources(id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(key)
                .value(value)
                .build(),
        )
        .send()
        .await
        .expect("tag an instance");
}

/// The user data of an instance, decoded.
pub async fn user_data(client: &aws_sdk_ec2::Client, id: &str) -> String {
    use base64::Engine;
    let out = client
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .expect("describe the user data");
    let encoded = out
        .user_data()
        .and_then(|v| v.value())
        .expect("the instance has user data");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("user data is base64");
    String::from_utf8(bytes).expect("user data is text")
}

/// Gives `cmd` exactly `env` of the AWS and ConCoord settings, none of the caller's.
pub fn set_env(cmd: &mut Command, env: &[(&str, String)]) {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("CONCOORD_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
}

/// Runs `concoord ARGS` with `env` (and nothing of the caller's AWS settings), stdin
/// closed; bounded by the command's own timeouts.
pub fn concoord(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    set_env(&mut cmd, env);
    cmd.output().expect("run concoord")
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A fake IMDSv2: a token for PUT /latest/api/token, then the instance id and private IP.
pub struct FakeImds {
    pub addr: SocketAddr,
    /// The paths asked for, in order.
    pub asked: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeImds {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const TOKEN: &str = "test-token";

impl FakeImds {
    pub async fn start(instance_id: &str, local_ipv4: &str) -> FakeImds {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind IMDS");
        let addr = listener.local_addr().expect("IMDS address");
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (id, ip, log) = (
            instance_id.to_string(),
            local_ipv4.to_string(),
            asked.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (id, ip, log) = (id.clone(), ip.clone(), log.clone());
                tokio::spawn(async move {
                    let _ = serve_imds(conn, &id, &ip, &log).await;
                });
            }
        });
        FakeImds { addr, asked, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn serve_imds(
    mut conn: TcpStream,
    id: &str,
    ip: &str,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    // Several requests may come on one connection.
    while let Some(request) = read_request(&mut conn, &mut buf).await? {
        let line = request.request_line().to_string();
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        log.lock().unwrap().push(format!("{method} {path}"));
        let has_token = request
            .header("x-aws-ec2-metadata-token")
            .is_some_and(|v| v.contains(TOKEN));
        let (status, extra, body) = match (method, path) {
            ("PUT", "/latest/api/token") => (
                "200 OK",
                "x-aws-ec2-metadata-token-ttl-seconds: 21600\r\n",
                TOKEN.to_string(),
            ),
            ("GET", _) if !has_token => ("401 Unauthorized", "", String::new()),
            ("GET", "/latest/meta-data/instance-id") => ("200 OK", "", id.to_string()),
            ("GET", "/latest/meta-data/local-ipv4") => ("200 OK", "", ip.to_string()),
            _ => ("404 Not Found", "", String::new()),
        };
        answer(&mut conn, status, extra, "text/plain", &body).await?;
    }
    Ok(())
}

/// An EC2 action the proxy answers with an error after letting `after` of them through.
#[derive(Clone, Debug)]
pub struct Fault {
    pub action: &'static str,
    pub code: &'static str,
    pub after: usize,
}

/// A proxy to moto that answers the EC2 actions in `faults` (e.g. "RunInstances") with the
/// given error code, and records every action it forwards or answers.
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub actions: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr, faults: &[Fault]) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let faults = Arc::new(faults.to_vec());
        let actions = Arc::new(Mutex::new(Vec::new()));
        let log = actions.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (faults, log) = (faults.clone(), log.clone());
                tokio::spawn(async move {
                    let _ = inject(conn, upstream, &faults, &log).await;
                });
            }
        });
        FaultProxy {
            addr,
            actions,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn inject(
    mut conn: TcpStream,
    upstream: SocketAddr,
    faults: &[Fault],
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let Some(request) = read_request(&mut conn, &mut Vec::new()).await? else {
        return Ok(());
    };
    let body = String::from_utf8_lossy(&request.body).to_string();
    let action = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .unwrap_or("")
        .to_string();
    let seen_before = {
        let mut log = log.lock().unwrap();
        let n = log.iter().filter(|a| **a == action).count();
        log.push(action.clone());
        n
    };
    if let Some(Fault { code, .. }) = faults
        .iter()
        .find(|f| f.action == action && seen_before >= f.after)
    {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
             <Message>injected by the test for {action}</Message></Error></Errors>\
             <RequestID>test</RequestID></Response>"
        );
        answer(
            &mut conn,
            "400 Bad Request",
            "Connection: close\r\n",
            "text/xml",
            &xml,
        )
        .await?;
        return conn.shutdown().await;
    }
    forward(conn, upstream, &request).await
}
