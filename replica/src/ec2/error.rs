//! What can go wrong on the EC2 path; `Display` is the one line the user sees.

#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    #[error(
        "no AWS credentials found ({0}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, use a profile, or run `concoord route53id`/`route53key`"
    )]
    NoCredentials(String),
    #[error("AMI {0} does not exist in this region (or is not visible to this account)")]
    UnknownAmi(String),
    #[error("no default AMI found (Amazon Linux 2023, x86_64); pass --ami")]
    NoDefaultAmi,
    #[error("EC2 quota reached ({code}): {message}; nothing was launched")]
    Quota { code: String, message: String },
    #[error("not authorized ({code}): {message}")]
    Unauthorized { code: String, message: String },
    #[error("EC2 is unreachable: {0}")]
    Unreachable(String),
    #[error("EC2 refused {operation}: {message}")]
    Rejected { operation: String, message: String },
    #[error("instance metadata: {0}")]
    Metadata(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}
