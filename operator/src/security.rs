//! A cluster's certificates and tokens (spec.tls, spec.auth): which Secrets it needs, when a
//! certificate is renewed, and what the Secrets hold (pure, tested from fixtures), then
//! making it so with the API (`ensure`).
//!
//! Renewal replaces a Secret's content; the kubelet updates the mounted files and the
//! replicas re-read them within seconds (they watch their files), so no pod restarts and
//! the group keeps its leader.

use crate::crd::{CertificateStatus, ConCoordCluster, TlsMode};
use crate::names::ClusterNames;
use concoord::auth::Token;
use concoord::client::Credentials;
use concoord::net::secure::ClientTls;
use concoord::pki::{self, CertKind, Pem};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use std::collections::BTreeMap;

/// The CA's lifetime; it is not renewed (clients trust it).
pub const CA_DAYS: u32 = 3650;
/// The lifetime of the replicas' and the applications' certificates.
pub const CERT_DAYS: u32 = 90;
/// A certificate with less than this left is renewed.
pub const RENEW_BEFORE_SECS: i64 = 30 * 86_400;

pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_CRT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TOKEN_KEY: &str = "token";
pub const AUTH_KEY: &str = "auth";
/// Where the replica container finds its certificate, key and CA.
pub const TLS_DIR: &str = "/etc/concoord/tls";
/// Where the replica container finds its auth file.
pub const AUTH_DIR: &str = "/etc/concoord/auth";

/// The Secrets the pods mount, as the spec says (rendering needs no API call).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PodSecurity {
    /// The replicas' certificate, key and CA (`tls.crt`, `tls.key`, `ca.crt`).
    pub tls_secret: Option<String>,
    /// The auth file and the admin token (the probes' and the peers' identity).
    pub auth: Option<AuthSecrets>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSecrets {
    pub file_secret: String,
    pub admin_token_secret: String,
}

pub fn pod_security(cc: &ConCoordCluster, names: &ClusterNames) -> PodSecurity {
    let tls_secret = match cc.spec.tls.mode {
        TlsMode::Operator => Some(names.server_tls_secret()),
        TlsMode::Provided => cc.spec.tls.server_secret.clone(),
        TlsMode::Disabled => None,
    };
    let auth = cc.spec.auth.enabled.then(|| AuthSecrets {
        file_secret: names.auth_secret(),
        admin_token_secret: names.admin_token_secret(),
    });
    PodSecurity { tls_secret, auth }
}

/// Every name a replica is dialled at: each pod, the Services, the loopback of the probes,
/// and the names its nameserver publishes in SRV records (`r<id>.<domain>`), which clients
/// that find the group by its domain check.
pub fn server_hosts(names: &ClusterNames, domain: &str) -> Vec<String> {
    let mut hosts = names.server_hosts();
    hosts.push(format!("*.{}", domain.trim_end_matches('.')));
    hosts
}

/// What to do with one of the operator's certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertPlan {
    Keep,
    /// Issue a new one, for this reason.
    Issue(String),
}

/// Whether the certificate in a Secret's `data` can stay: it must be there whole, be signed
/// by the current CA, name exactly `hosts`, and have more than [`RENEW_BEFORE_SECS`] left
/// at `now` (Unix seconds).
pub fn plan_certificate(
    data: Option<&BTreeMap<String, String>>,
    ca_cert: &str,
    hosts: &[String],
    now: i64,
) -> CertPlan {
    let Some(data) = data else {
        return CertPlan::Issue("it does not exist yet".into());
    };
    let (Some(cert), Some(_key)) = (data.get(TLS_CRT), data.get(TLS_KEY)) else {
        return CertPlan::Issue("the Secret lacks tls.crt or tls.key".into());
    };
    if data.get(CA_CRT).map(String::as_str) != Some(ca_cert) {
        return CertPlan::Issue("it was signed by another CA".into());
    }
    let Some(info) = pki::inspect(cert) else {
        return CertPlan::Issue("tls.crt does not parse".into());
    };
    let mut have = info.hosts.clone();
    let mut want = hosts.to_vec();
    have.sort();
    want.sort();
    if have != want {
        return CertPlan::Issue("the names it must cover changed".into());
    }
    if info.not_after - now < RENEW_BEFORE_SECS {
        return CertPlan::Issue(format!(
            "it expires in {} days",
            (info.not_after - now).max(0) / 86_400
        ));
    }
    CertPlan::Keep
}

fn secret(meta: ObjectMeta, type_: &str, data: BTreeMap<String, String>) -> Secret {
    Secret {
        metadata: meta,
        type_: Some(type_.into()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// The CA Secret: certificate and key.
pub fn ca_secret(meta: ObjectMeta, ca: &Pem) -> Secret {
    secret(
        meta,
        "Opaque",
        BTreeMap::from([
            (CA_CRT.to_string(), ca.cert.clone()),
            (CA_KEY.to_string(), ca.key.clone()),
        ]),
    )
}

/// A certificate Secret in cert-manager's form (`kubernetes.io/tls` with `ca.crt`).
pub fn tls_secret(meta: ObjectMeta, pem: &Pem, ca_cert: &str) -> Secret {
    secret(
        meta,
        "kubernetes.io/tls",
        BTreeMap::from([
            (TLS_CRT.to_string(), pem.cert.clone()),
            (TLS_KEY.to_string(), pem.key.clone()),
            (CA_CRT.to_string(), ca_cert.to_string()),
        ]),
    )
}

pub fn token_secret(meta: ObjectMeta, token: &str) -> Secret {
    secret(
        meta,
        "Opaque",
        BTreeMap::from([(TOKEN_KEY.to_string(), token.to_string())]),
    )
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The replicas' auth file: the tokens as digests (the file never holds a token), and the
/// applications' certificate name when the operator makes one.
pub fn auth_file(admin_token: &str, app_token: &str, client_cert: Option<&str>) -> String {
    let mut text = format!(
        "# Written by concoord-operator; edits are overwritten.\n\
         token operator admin sha256:{}\n\
         token app client sha256:{}\n",
        sha256_hex(admin_token),
        sha256_hex(app_token)
    );
    if let Some(cn) = client_cert {
        text.push_str(&format!("certificate {cn} client\n"));
    }
    text
}

pub fn auth_secret(meta: ObjectMeta, file: &str) -> Secret {
    secret(
        meta,
        "Opaque",
        BTreeMap::from([(AUTH_KEY.to_string(), file.to_string())]),
    )
}

/// A new random token (256 bits, hex).
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Secret's data as text; keys whose value is not UTF-8 are left out.
pub fn text_data(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
        .collect()
}

/// The status line of a certificate.
pub fn certificate_status(secret: &str, kind: &str, cert_pem: &str) -> Option<CertificateStatus> {
    let info = pki::inspect(cert_pem)?;
    let not_after = k8s_openapi::jiff::Timestamp::from_second(info.not_after)
        .ok()?
        .to_string();
    Some(CertificateStatus {
        secret: secret.to_string(),
        kind: kind.to_string(),
        not_after,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

/// What the reconcile learned: how to reach the replicas, and the certificates to report.
pub struct Security {
    pub creds: Credentials,
    pub certificates: Vec<CertificateStatus>,
    /// Certificates issued in this pass, with the reason (for events).
    pub issued: Vec<String>,
}

/// Creates what is missing, renews what expires, and returns the operator's credentials.
pub async fn ensure(
    cc: &ConCoordCluster,
    names: &ClusterNames,
    client: &kube::Client,
) -> Result<Security, SecurityError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &names.namespace);
    let meta =
        crate::render::owned_meta(cc, names).map_err(|e| SecurityError::Invalid(e.to_string()))?;
    let mut out = Security {
        creds: Credentials::default(),
        certificates: Vec::new(),
        issued: Vec::new(),
    };
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    match cc.spec.tls.mode {
        TlsMode::Disabled => {}
        TlsMode::Provided => {
            let name = cc.spec.tls.server_secret.clone().unwrap_or_default();
            let found = api.get_opt(&name).await?.ok_or_else(|| {
                SecurityError::Invalid(format!("tls.serverSecret {name} does not exist"))
            })?;
            let data = text_data(&found);
            let ca = data.get(CA_CRT).ok_or_else(|| {
                SecurityError::Invalid(format!(
                    "tls.serverSecret {name} has no ca.crt: the operator needs the CA to check the replicas"
                ))
            })?;
            out.creds.tls = Some(tls_from_pem(ca)?);
            out.certificates.extend(
                data.get(TLS_CRT)
                    .and_then(|c| certificate_status(&name, "server", c)),
            );
        }
        TlsMode::Operator => {
            let ca = ensure_ca(&api, names, &meta).await?;
            out.certificates
                .extend(certificate_status(&names.ca_secret(), "ca", &ca.cert));
            for (secret_name, kind, cn, hosts, cert_kind) in [
                (
                    names.server_tls_secret(),
                    "server",
                    names.name.clone(),
                    server_hosts(names, &crate::render::domain(cc, names)),
                    CertKind::Replica,
                ),
                (
                    names.client_tls_secret(),
                    "client",
                    names.client_cert_name(),
                    Vec::new(),
                    CertKind::Client,
                ),
            ] {
                let existing = api.get_opt(&secret_name).await?.map(|s| text_data(&s));
                let cert = match plan_certificate(existing.as_ref(), &ca.cert, &hosts, now) {
                    CertPlan::Keep => existing
                        .as_ref()
                        .and_then(|d| d.get(TLS_CRT).cloned())
                        .unwrap_or_default(),
                    CertPlan::Issue(why) => {
                        let pem = pki::issue(&ca, &cn, &hosts, CERT_DAYS, cert_kind)
                            .map_err(|e| SecurityError::Invalid(e.to_string()))?;
                        let secret = tls_secret(meta(secret_name.clone()), &pem, &ca.cert);
                        apply(&api, &secret_name, &secret).await?;
                        tracing::info!(cluster = %names.name, "issued {secret_name}: {why}");
                        out.issued.push(format!("{secret_name} ({why})"));
                        pem.cert
                    }
                };
                out.certificates
                    .extend(certificate_status(&secret_name, kind, &cert));
            }
            out.creds.tls = Some(tls_from_pem(&ca.cert)?);
        }
    }
    if cc.spec.auth.enabled {
        let admin = ensure_token(&api, &names.admin_token_secret(), &meta).await?;
        let app = ensure_token(&api, &names.app_token_secret(), &meta).await?;
        let client_cert = (cc.spec.tls.mode == TlsMode::Operator).then(|| names.client_cert_name());
        let file = auth_file(&admin, &app, client_cert.as_deref());
        let wanted = auth_secret(meta(names.auth_secret()), &file);
        let current = api.get_opt(&names.auth_secret()).await?;
        if current
            .as_ref()
            .map(text_data)
            .and_then(|d| d.get(AUTH_KEY).cloned())
            != Some(file)
        {
            apply(&api, &names.auth_secret(), &wanted).await?;
        }
        out.creds.token = Some(Token::new(admin));
    }
    Ok(out)
}

fn tls_from_pem(ca: &str) -> Result<ClientTls, SecurityError> {
    ClientTls::from_pem(ca, None).map_err(|e| SecurityError::Invalid(format!("the CA: {e}")))
}

async fn apply(api: &Api<Secret>, name: &str, secret: &Secret) -> Result<(), SecurityError> {
    api.patch(
        name,
        &PatchParams::apply(crate::names::MANAGER).force(),
        &Patch::Apply(secret),
    )
    .await?;
    Ok(())
}

/// The CA, made once. A CA Secret that lost its content is made again (and every
/// certificate with it, as they no longer match).
async fn ensure_ca(
    api: &Api<Secret>,
    names: &ClusterNames,
    meta: &impl Fn(String) -> ObjectMeta,
) -> Result<Pem, SecurityError> {
    if let Some(found) = api.get_opt(&names.ca_secret()).await? {
        let data = text_data(&found);
        if let (Some(cert), Some(key)) = (data.get(CA_CRT), data.get(CA_KEY))
            && pki::inspect(cert).is_some()
        {
            return Ok(Pem {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        tracing::warn!(
            "{} does not hold a CA certificate and key: making a new CA",
            names.ca_secret()
        );
    }
    let ca = pki::new_ca(&format!("{} CA", names.name), CA_DAYS)
        .map_err(|e| SecurityError::Invalid(e.to_string()))?;
    apply(
        api,
        &names.ca_secret(),
        &ca_secret(meta(names.ca_secret()), &ca),
    )
    .await?;
    Ok(ca)
}

/// A token Secret's token, created once.
async fn ensure_token(
    api: &Api<Secret>,
    name: &str,
    meta: &impl Fn(String) -> ObjectMeta,
) -> Result<String, SecurityError> {
    let found = api.get_opt(name).await?;
    if let Some(token) = found
        .as_ref()
        .and_then(|s| text_data(s).get(TOKEN_KEY).cloned())
    {
        let token = token.trim().to_string();
        if token.len() >= concoord::auth::MIN_TOKEN_LEN {
            return Ok(token);
        }
    }
    let token = new_token();
    let secret = token_secret(meta(name.to_string()), &token);
    if found.is_some() {
        // There, but without a usable token: replace it.
        apply(api, name, &secret).await?;
        return Ok(token);
    }
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(token),
        // Another reconcile created it first: use that one.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(api
            .get(name)
            .await
            .ok()
            .and_then(|s| text_data(&s).get(TOKEN_KEY).cloned())
            .unwrap_or(token)),
        Err(e) => Err(e.into()),
    }
}
