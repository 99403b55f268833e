//! What the kubelet would run for one pod of a rendered StatefulSet: the container's
//! command line and environment with downward-API fields, ConfigMap keys and `$(VAR)`
//! references resolved. Lets a test start the rendered pods as plain containers.

use k8s_openapi::api::apps::v1::StatefulSet;
use std::collections::BTreeMap;

/// One container's process as the kubelet would start it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodProcess {
    pub pod_name: String,
    pub image: String,
    /// Program and arguments (`command` followed by `args`).
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PodExecError {
    #[error("StatefulSet has no {0}")]
    Missing(&'static str),
    #[error("env {var}: {what} is not supported here")]
    Unsupported { var: String, what: String },
    #[error("env {var}: ConfigMap {name} has no key {key} and the reference is not optional")]
    MissingKey {
        var: String,
        name: String,
        key: String,
    },
}

/// The pod's identity the downward API would expose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    pub ordinal: u32,
    pub ip: String,
}

/// The first container of pod `facts.ordinal`, with `configmaps` (name -> data) as the
/// cluster holds them.
pub fn pod_process(
    sts: &StatefulSet,
    facts: &PodFacts,
    configmaps: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<PodProcess, PodExecError> {
    let name = sts
        .metadata
        .name
        .as_deref()
        .ok_or(PodExecError::Missing("name"))?;
    let namespace = sts.metadata.namespace.as_deref().unwrap_or("default");
    let pod_name = format!("{name}-{}", facts.ordinal);
    let container = sts
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .ok_or(PodExecError::Missing("container"))?;
    let mut env: Vec<(String, String)> = Vec::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => Some(expand(v, &env)),
            (None, None) => Some(String::new()),
            (None, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    Some(match field.field_path.as_str() {
                        "metadata.name" => pod_name.clone(),
                        "metadata.namespace" => namespace.to_string(),
                        "status.podIP" => facts.ip.clone(),
                        other => {
                            return Err(PodExecError::Unsupported {
                                var: var.name.clone(),
                                what: format!("field {other}"),
                            });
                        }
                    })
                } else if let Some(key) = &from.config_map_key_ref {
                    match configmaps.get(&key.name).and_then(|d| d.get(&key.key)) {
                        Some(v) => Some(v.clone()),
                        None if key.optional == Some(true) => None,
                        None => {
                            return Err(PodExecError::MissingKey {
                                var: var.name.clone(),
                                name: key.name.clone(),
                                key: key.key.clone(),
                            });
                        }
                    }
                } else {
                    return Err(PodExecError::Unsupported {
                        var: var.name.clone(),
                        what: "this value source".into(),
                    });
                }
            }
        };
        if let Some(value) = value {
            env.push((var.name.clone(), value));
        }
    }
    let argv = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|a| expand(a, &env))
        .collect();
    Ok(PodProcess {
        pod_name,
        image: container.image.clone().unwrap_or_default(),
        argv,
        env,
    })
}

/// Kubernetes `$(VAR)` expansion: known variables are replaced, `$$` is a literal `$`,
/// unknown references stay as written.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(close) = tail.strip_prefix("$(").and_then(|t| t.find(')')) {
            let name = &tail[2..2 + close];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&tail[..close + 3]),
            }
            rest = &tail[close + 3..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes() {
        let env = vec![("A".to_string(), "x".to_string())];
        assert_eq!(expand("$(A).peers", &env), "x.peers");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("$(B)-$", &env), "$(B)-$");
        assert_eq!(expand("$(A", &env), "$(A");
    }
}
