//! A cluster's instances as the launch path sees them, the order that decides which one
//! founds the group, and where each one's replica listens.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub state: String,
    /// Launch time as (seconds, nanoseconds) since the epoch; missing sorts last.
    pub launched: Option<(i64, u32)>,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub instance_type: String,
    pub image_id: String,
    pub subnet: Option<String>,
    pub security_groups: Vec<String>,
    pub key_name: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl Instance {
    pub fn from_sdk(i: &aws_sdk_ec2::types::Instance) -> Instance {
        Instance {
            id: i.instance_id().unwrap_or_default().to_string(),
            state: i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_else(|| "unknown".into()),
            launched: i.launch_time().map(|t| (t.secs(), t.subsec_nanos())),
            private_ip: i.private_ip_address().map(str::to_string),
            public_ip: i.public_ip_address().map(str::to_string),
            instance_type: i
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            image_id: i.image_id().unwrap_or_default().to_string(),
            subnet: i.subnet_id().map(str::to_string),
            security_groups: i
                .security_groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_string))
                .collect(),
            key_name: i.key_name().map(str::to_string),
            tags: i
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect(),
        }
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// The port its replica listens on: the `concoord:port` tag, else the default.
    pub fn port(&self) -> u16 {
        self.tag(super::PORT_TAG)
            .and_then(|p| p.parse().ok())
            .unwrap_or(super::DEFAULT_PORT)
    }

    /// Where its replica listens: the `concoord:addr` tag when present, else the private
    /// IP and the cluster port; none before EC2 has given it an address.
    pub fn replica_addr(&self) -> Option<String> {
        if let Some(addr) = self.tag(super::ADDR_TAG) {
            return Some(addr.to_string());
        }
        self.private_ip
            .as_ref()
            .map(|ip| format!("{ip}:{}", self.port()))
    }
}

/// Oldest launch first, instance id breaking ties: every replica computes the same order
/// from the same DescribeInstances answer, so they agree on who comes first.
pub fn sort_founding_order(instances: &mut [Instance]) {
    instances.sort_by(|a, b| {
        let key = |i: &Instance| (i.launched.unwrap_or((i64::MAX, u32::MAX)), i.id.clone());
        key(a).cmp(&key(b))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, launched: Option<(i64, u32)>) -> Instance {
        Instance {
            id: id.into(),
            state: "running".into(),
            launched,
            private_ip: Some("10.0.0.5".into()),
            public_ip: None,
            instance_type: "t3.micro".into(),
            image_id: "ami-1".into(),
            subnet: None,
            security_groups: Vec::new(),
            key_name: None,
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn oldest_first_then_id() {
        let mut v = vec![
            inst("i-c", None),
            inst("i-b", Some((10, 0))),
            inst("i-z", Some((5, 1))),
            inst("i-a", Some((10, 0))),
        ];
        sort_founding_order(&mut v);
        let ids: Vec<&str> = v.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["i-z", "i-a", "i-b", "i-c"]);
    }

    #[test]
    fn address_from_tag_or_private_ip() {
        let mut i = inst("i-a", None);
        assert_eq!(i.replica_addr().as_deref(), Some("10.0.0.5:14000"));
        i.tags.insert(crate::ec2::PORT_TAG.into(), "15000".into());
        assert_eq!(i.replica_addr().as_deref(), Some("10.0.0.5:15000"));
        i.tags
            .insert(crate::ec2::ADDR_TAG.into(), "127.0.0.1:9".into());
        assert_eq!(i.replica_addr().as_deref(), Some("127.0.0.1:9"));
        i.tags.clear();
        i.private_ip = None;
        assert_eq!(i.replica_addr(), None);
    }
}
