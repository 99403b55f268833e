//! Who may do what on a replica's port: the identity a client proves (a bearer token, or the
//! name in its TLS client certificate), the role the auth file gives that identity, and the
//! role each request needs.
//!
//! Auth is on when a replica runs with `--auth-file`. Requests are checked where they
//! arrive, before anything is proposed, so a refused request changes nothing. The file is
//! re-read on SIGHUP and when its content changes; a connection's role is looked up on every
//! request, so a token taken out of the file stops working at once.

use crate::command::Operation;
use crate::net::wire::ClientFrame;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Tokens shorter than this are refused in the auth file: a token is a password that
/// crosses the network on every connection, so it must not be guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// What a role may do; each role may do everything the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Status, listings, and the read methods of the built-in objects.
    Readonly,
    /// Calling any method of any object, besides what `Readonly` may.
    Client,
    /// Membership changes, defining types, creating and deleting objects, fault injection.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Readonly => "readonly",
            Role::Client => "client",
            Role::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        match s {
            "readonly" => Some(Role::Readonly),
            "client" => Some(Role::Client),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A bearer token. Neither `Debug` nor the wire's logging shows it, so it never reaches a
/// log line.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    pub fn new(secret: impl Into<String>) -> Token {
        Token(secret.into())
    }

    /// A token from a flag or variable; an empty one is no token.
    pub fn from_arg(arg: Option<&str>) -> Option<Token> {
        arg.filter(|t| !t.is_empty()).map(Token::new)
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn digest(&self) -> Digest256 {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

type Digest256 = [u8; 32];

/// Who a connection proved to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Auth is off: every connection may do everything, as without an auth file.
    Anyone,
    /// The holder of a token of the auth file (kept as the token's digest, and the entry's
    /// name for messages).
    Token { name: String, digest: Digest256 },
    /// A client certificate from the group's CA, by its common name.
    Certificate(String),
}

impl Identity {
    /// What a session opened by this identity records as its owner (`token:NAME`,
    /// `cert:CN`); None for anyone (auth off).
    pub fn owner_key(&self) -> Option<String> {
        match self {
            Identity::Anyone => None,
            Identity::Token { name, .. } => Some(format!("token:{name}")),
            Identity::Certificate(cn) => Some(format!("cert:{cn}")),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Anyone => f.write_str("anyone"),
            Identity::Token { name, .. } => write!(f, "token '{name}'"),
            Identity::Certificate(cn) => write!(f, "certificate '{cn}'"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read the auth file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {reason}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// The auth file, parsed. One entry per line; `#` starts a comment:
///
/// ```text
/// token        operator    admin     <token, at least 16 characters, or sha256:<hex digest>>
/// token        app         client    sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
/// certificate  monitoring  readonly
/// ```
#[derive(Debug, Default)]
pub struct AuthPolicy {
    tokens: HashMap<Digest256, (String, Role)>,
    certificates: HashMap<String, Role>,
}

impl AuthPolicy {
    pub fn load(path: &Path) -> Result<AuthPolicy, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        AuthPolicy::parse(&text).map_err(|(line, reason)| AuthFileError::Line {
            path: path.to_path_buf(),
            line,
            reason,
        })
    }

    /// Parses the file's text; an error names the line (from 1) and what is wrong with it.
    /// Error messages never quote a token.
    pub fn parse(text: &str) -> Result<AuthPolicy, (usize, String)> {
        let mut policy = AuthPolicy::default();
        let mut names = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            // A comment starts at a field beginning with '#' (a token may contain '#').
            let fields: Vec<&str> = raw
                .split_whitespace()
                .take_while(|f| !f.starts_with('#'))
                .collect();
            if fields.is_empty() {
                continue;
            }
            let role_of = |s: &str| {
                Role::parse(s).ok_or_else(|| {
                    (
                        line,
                        format!("unknown role '{s}' (the roles are admin, client and readonly)"),
                    )
                })
            };
            match fields.as_slice() {
                ["token", name, role, secret] => {
                    let role = role_of(role)?;
                    let digest = token_digest(secret).map_err(|reason| (line, reason))?;
                    if let Some(first) = names.insert(("token", name.to_string()), line) {
                        return Err((line, format!("token '{name}' is already on line {first}")));
                    }
                    if policy
                        .tokens
                        .insert(digest, (name.to_string(), role))
                        .is_some()
                    {
                        return Err((line, format!("token '{name}' repeats an earlier token")));
                    }
                }
                ["certificate" | "cert", name, role] => {
                    let role = role_of(role)?;
                    if policy.certificates.insert(name.to_string(), role).is_some() {
                        return Err((line, format!("certificate '{name}' is listed twice")));
                    }
                }
                ["token", name, ..] => {
                    return Err((
                        line,
                        format!("token '{name}': expected 'token NAME ROLE SECRET'"),
                    ));
                }
                ["certificate" | "cert", ..] => {
                    return Err((line, "expected 'certificate COMMON-NAME ROLE'".into()));
                }
                [kind, ..] => {
                    return Err((
                        line,
                        format!("unknown entry '{kind}' (expected 'token' or 'certificate')"),
                    ));
                }
                [] => {}
            }
        }
        Ok(policy)
    }

    /// Who a new connection is: its token when it sent one (a wrong token is refused even
    /// when the certificate would do), otherwise its certificate's name.
    pub fn authenticate(
        &self,
        token: Option<&Token>,
        certificate: Option<&str>,
    ) -> Result<Identity, String> {
        if let Some(token) = token {
            let digest = token.digest();
            return match self.tokens.get(&digest) {
                Some((name, _)) => Ok(Identity::Token {
                    name: name.clone(),
                    digest,
                }),
                None => Err("PermissionError: the token is not valid for this group".into()),
            };
        }
        match certificate {
            Some(cn) if self.certificates.contains_key(cn) => {
                Ok(Identity::Certificate(cn.to_string()))
            }
            Some(cn) => Err(format!(
                "PermissionError: certificate '{cn}' has no role in this group's auth file; present a token (--token, CONCOORD_TOKEN)"
            )),
            None => Err(
                "PermissionError: this group requires authentication: present a token (--token, CONCOORD_TOKEN) or a client certificate (--cert, --key)"
                    .into(),
            ),
        }
    }

    /// The role the file gives `who` now; None once the entry is gone from the file.
    pub fn role_of(&self, who: &Identity) -> Option<Role> {
        match who {
            Identity::Anyone => Some(Role::Admin),
            Identity::Token { digest, .. } => self.tokens.get(digest).map(|(_, role)| *role),
            Identity::Certificate(cn) => self.certificates.get(cn).copied(),
        }
    }
}

/// The auth file's text with every plain token replaced by its `sha256:` digest, so the
/// file can travel and be stored (EC2 user data, a remote host) without the tokens in it.
/// The text must parse (see [`AuthPolicy::parse`]).
pub fn hash_tokens(text: &str) -> Result<String, (usize, String)> {
    AuthPolicy::parse(text)?;
    let mut out = String::new();
    for raw in text.lines() {
        let fields: Vec<&str> = raw.split_whitespace().collect();
        match fields.as_slice() {
            ["token", name, role, secret, ..]
                if !secret.starts_with("sha256:") && !secret.starts_with('#') =>
            {
                let hex: String = Token::new(*secret)
                    .digest()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                out.push_str(&format!("token {name} {role} sha256:{hex}\n"));
            }
            _ => {
                out.push_str(raw);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// The digest a `token` line stands for: `sha256:<64 hex digits>`, or the token itself.
fn token_digest(secret: &str) -> Result<Digest256, String> {
    if let Some(hex) = secret.strip_prefix("sha256:") {
        return parse_hex_digest(hex).ok_or_else(|| {
            "a 'sha256:' token must be followed by 64 hex digits (sha256sum of the token)".into()
        });
    }
    if secret.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "a token must have at least {MIN_TOKEN_LEN} characters (this one has {})",
            secret.len()
        ));
    }
    Ok(Token::new(secret).digest())
}

fn parse_hex_digest(hex: &str) -> Option<Digest256> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The role a client frame needs. `read_only(object, method)` tells whether a call changes
/// no state (asked only for calls).
pub fn needed_role(frame: &ClientFrame, read_only: impl FnOnce(&str, &str) -> bool) -> Role {
    match frame {
        ClientFrame::Status | ClientFrame::KeepAlive { .. } => Role::Readonly,
        ClientFrame::Membership(_) | ClientFrame::Fault(_) => Role::Admin,
        ClientFrame::Request(cmd) => match &cmd.op {
            Operation::OpenSession
            | Operation::CloseSession
            | Operation::List
            | Operation::ListTypes
            | Operation::ShowType { .. } => Role::Readonly,
            // A reset rebuilds the object as a re-creation would: the admin's.
            Operation::Call { method, .. } if method == "__concoordinit__" => Role::Admin,
            Operation::Call { object, method, .. } => {
                if read_only(object, method) {
                    Role::Readonly
                } else {
                    Role::Client
                }
            }
            Operation::Create { .. } | Operation::Delete { .. } | Operation::DefineType { .. } => {
                Role::Admin
            }
        },
    }
}

/// What a request asks, for a refusal message.
fn describe(frame: &ClientFrame) -> String {
    match frame {
        ClientFrame::Status => "the status".into(),
        ClientFrame::KeepAlive { .. } => "a keep-alive".into(),
        ClientFrame::Membership(_) => "a membership change".into(),
        ClientFrame::Fault(_) => "fault injection".into(),
        ClientFrame::Request(cmd) => match &cmd.op {
            Operation::Call { object, method, .. } => format!("calling {object}.{method}"),
            Operation::Create { name, .. } => format!("creating object '{name}'"),
            Operation::Delete { name } => format!("deleting object '{name}'"),
            Operation::DefineType { class, .. } => format!("defining type '{class}'"),
            other => format!("{other:?}"),
        },
    }
}

/// The replica's current auth file, re-read when it changes.
#[derive(Debug)]
pub struct AuthFile {
    path: PathBuf,
    current: RwLock<(Arc<AuthPolicy>, Vec<u8>)>,
}

impl AuthFile {
    /// Reads the file; a replica with an unreadable or invalid auth file does not start.
    pub fn load(path: PathBuf) -> Result<Arc<AuthFile>, AuthFileError> {
        let bytes = std::fs::read(&path).map_err(|source| AuthFileError::Read {
            path: path.clone(),
            source,
        })?;
        let policy = AuthFile::parse_bytes(&path, &bytes)?;
        Ok(Arc::new(AuthFile {
            path,
            current: RwLock::new((Arc::new(policy), bytes)),
        }))
    }

    fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<AuthPolicy, AuthFileError> {
        let line_error = |line, reason| AuthFileError::Line {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let text =
            std::str::from_utf8(bytes).map_err(|_| line_error(1, "not UTF-8 text".into()))?;
        AuthPolicy::parse(text).map_err(|(line, reason)| line_error(line, reason))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<AuthPolicy> {
        match self.current.read() {
            Ok(current) => current.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        }
    }

    /// Re-reads the file. Ok(true) when its content changed (or `force`) and the new policy
    /// is in force; an invalid file is an error and the policy in force stays.
    pub fn reload(&self, force: bool) -> Result<bool, AuthFileError> {
        let bytes = std::fs::read(&self.path).map_err(|source| AuthFileError::Read {
            path: self.path.clone(),
            source,
        })?;
        let unchanged = match self.current.read() {
            Ok(current) => current.1 == bytes,
            Err(poisoned) => poisoned.into_inner().1 == bytes,
        };
        if unchanged && !force {
            return Ok(false);
        }
        let policy = AuthFile::parse_bytes(&self.path, &bytes)?;
        let mut current = match self.current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = (Arc::new(policy), bytes);
        Ok(true)
    }
}

/// Why `who` may not send `frame` under `policy`, as the `PermissionError` message; None
/// when the frame is allowed. Without a policy (auth off) everything is allowed.
pub fn refusal(
    policy: Option<&AuthPolicy>,
    who: &Identity,
    frame: &ClientFrame,
    read_only: impl FnOnce(&str, &str) -> bool,
) -> Option<String> {
    let policy = policy?;
    let needed = needed_role(frame, read_only);
    match policy.role_of(who) {
        Some(role) if role >= needed => None,
        Some(role) => Some(format!(
            "{who} has role '{}'; {} needs role '{}'",
            role.name(),
            describe(frame),
            needed.name()
        )),
        None => Some(format!("{who} is no longer in this group's auth file")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::ClientCommand;
    use crate::net::wire::{Fault, MembershipChange};

    const ADMIN: &str = "admin-token-0123456789";
    const CLIENT: &str = "client-token-0123456789";
    const READER: &str = "reader-token-0123456789";

    fn sha256_hex(s: &str) -> String {
        Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn policy() -> AuthPolicy {
        let text = format!(
            "# the group's identities\n\
             token operator admin {ADMIN}\n\
             \n\
             token app   client  sha256:{}   # stored hashed\n\
             token dash  readonly {READER}\n\
             certificate monitoring readonly\n\
             cert ops admin\n",
            sha256_hex(CLIENT)
        );
        AuthPolicy::parse(&text).unwrap()
    }

    fn request(op: Operation) -> ClientFrame {
        ClientFrame::Request(ClientCommand {
            session: 7,
            seq: 1,
            ack: 1,
            op,
            owner: None,
        })
    }

    fn call(object: &str, method: &str) -> ClientFrame {
        request(Operation::Call {
            object: object.into(),
            method: method.into(),
            args: vec![],
        })
    }

    fn who(p: &AuthPolicy, token: &str) -> Identity {
        p.authenticate(Some(&Token::new(token)), None).unwrap()
    }

    /// `getvalue` is a read, everything else a write, as a Counter says.
    fn counter_reads(_object: &str, method: &str) -> bool {
        method == "getvalue"
    }

    #[test]
    fn tokens_plain_and_hashed_and_certificates_get_their_roles() {
        let p = policy();
        assert_eq!(p.role_of(&who(&p, ADMIN)), Some(Role::Admin));
        assert_eq!(p.role_of(&who(&p, CLIENT)), Some(Role::Client));
        assert_eq!(p.role_of(&who(&p, READER)), Some(Role::Readonly));
        let monitoring = p.authenticate(None, Some("monitoring")).unwrap();
        assert_eq!(p.role_of(&monitoring), Some(Role::Readonly));
        let ops = p.authenticate(None, Some("ops")).unwrap();
        assert_eq!(p.role_of(&ops), Some(Role::Admin));
    }

    #[test]
    fn unknown_tokens_and_certificates_and_no_credentials_are_refused() {
        let p = policy();
        let wrong = p
            .authenticate(Some(&Token::new("not-a-token-of-this-group")), None)
            .unwrap_err();
        assert!(wrong.starts_with("PermissionError:"), "{wrong}");
        assert!(
            !wrong.contains("not-a-token"),
            "a token is never echoed: {wrong}"
        );
        // A wrong token is refused even with a good certificate beside it.
        assert!(
            p.authenticate(Some(&Token::new("x".repeat(20))), Some("ops"))
                .is_err()
        );
        let stranger = p.authenticate(None, Some("stranger")).unwrap_err();
        assert!(stranger.contains("'stranger' has no role"), "{stranger}");
        let nobody = p.authenticate(None, None).unwrap_err();
        assert!(nobody.contains("requires authentication"), "{nobody}");
    }

    #[test]
    fn each_role_may_do_what_it_names_and_no_more() {
        let p = policy();
        let admin = who(&p, ADMIN);
        let client = who(&p, CLIENT);
        let reader = who(&p, READER);
        let frames = [
            (ClientFrame::Status, Role::Readonly),
            (ClientFrame::KeepAlive { session: 7 }, Role::Readonly),
            (request(Operation::OpenSession), Role::Readonly),
            (request(Operation::List), Role::Readonly),
            (request(Operation::ListTypes), Role::Readonly),
            (call("counter", "getvalue"), Role::Readonly),
            (call("counter", "increment"), Role::Client),
            (call("counter", "__concoordinit__"), Role::Admin),
            (
                request(Operation::Create {
                    name: "c".into(),
                    type_name: "Counter".into(),
                    args: vec![],
                }),
                Role::Admin,
            ),
            (request(Operation::Delete { name: "c".into() }), Role::Admin),
            (
                request(Operation::DefineType {
                    module: "m".into(),
                    class: "C".into(),
                    source: String::new(),
                    replace: false,
                }),
                Role::Admin,
            ),
            (
                ClientFrame::Membership(MembershipChange::Add {
                    addr: "127.0.0.1:1".into(),
                }),
                Role::Admin,
            ),
            (ClientFrame::Fault(Fault::RestoreAll), Role::Admin),
        ];
        for (frame, needed) in &frames {
            for (id, role) in [
                (&admin, Role::Admin),
                (&client, Role::Client),
                (&reader, Role::Readonly),
            ] {
                let refused = refusal(Some(&p), id, frame, counter_reads);
                assert_eq!(
                    refused.is_none(),
                    role >= *needed,
                    "{role:?} sending {frame:?}: {refused:?}"
                );
                if let Some(message) = refused {
                    assert!(message.contains(needed.name()), "{message}");
                }
            }
            // Auth off: everything goes.
            assert_eq!(refusal(None, &Identity::Anyone, frame, counter_reads), None);
        }
    }

    #[test]
    fn a_token_taken_out_of_the_file_stops_working() {
        let p = policy();
        let reader = who(&p, READER);
        let without = AuthPolicy::parse(&format!("token operator admin {ADMIN}\n")).unwrap();
        let refused = refusal(Some(&without), &reader, &ClientFrame::Status, counter_reads);
        assert!(
            refused.is_some_and(|m| m.contains("no longer")),
            "a removed token is refused"
        );
    }

    #[test]
    fn bad_lines_are_named_and_never_quote_a_token() {
        let cases = [
            ("token a admin short", 1, "at least 16"),
            (
                "\ntoken a superuser 0123456789abcdef0",
                2,
                "unknown role 'superuser'",
            ),
            ("token a admin sha256:abcd", 1, "64 hex digits"),
            ("token a admin", 1, "expected 'token NAME ROLE SECRET'"),
            ("cert a", 1, "expected 'certificate COMMON-NAME ROLE'"),
            ("user a admin", 1, "unknown entry 'user'"),
            (
                "token a admin 0123456789abcdef0\ntoken a client 0123456789abcdef1",
                2,
                "already on line 1",
            ),
            (
                "token a admin 0123456789abcdef0\ntoken b client 0123456789abcdef0",
                2,
                "repeats an earlier token",
            ),
            ("cert m readonly\ncert m admin", 2, "listed twice"),
        ];
        for (text, line, needle) in cases {
            let (at, reason) = AuthPolicy::parse(text).unwrap_err();
            assert_eq!(at, line, "{text}: {reason}");
            assert!(reason.contains(needle), "{text}: {reason}");
            assert!(!reason.contains("0123456789abcdef"), "{reason}");
        }
    }

    #[test]
    fn hashed_files_keep_every_identity_and_hold_no_token() {
        let text = format!(
            "# comment\ntoken operator admin {ADMIN} # trailing\ntoken app client sha256:{}\ncert m readonly\ntoken hash#ed client 0123456789#abcdef\n",
            sha256_hex(CLIENT)
        );
        let hashed = hash_tokens(&text).unwrap();
        assert!(
            !hashed.contains(ADMIN) && !hashed.contains("0123456789#abcdef"),
            "{hashed}"
        );
        let p = AuthPolicy::parse(&hashed).unwrap();
        assert_eq!(p.role_of(&who(&p, ADMIN)), Some(Role::Admin));
        assert_eq!(p.role_of(&who(&p, CLIENT)), Some(Role::Client));
        // A '#' inside a token is part of it, not a comment.
        assert_eq!(p.role_of(&who(&p, "0123456789#abcdef")), Some(Role::Client));
        let m = p.authenticate(None, Some("m")).unwrap();
        assert_eq!(p.role_of(&m), Some(Role::Readonly));
        assert!(hash_tokens("token a superuser 0123456789abcdef0").is_err());
    }

    #[test]
    fn sessions_are_owned_by_who_opened_them() {
        assert_eq!(Identity::Anyone.owner_key(), None);
        let p = policy();
        assert_eq!(
            who(&p, ADMIN).owner_key().as_deref(),
            Some("token:operator")
        );
        let m = p.authenticate(None, Some("monitoring")).unwrap();
        assert_eq!(m.owner_key().as_deref(), Some("cert:monitoring"));
    }

    #[test]
    fn tokens_never_show_in_debug_output() {
        let t = Token::new("super-secret-token-value");
        assert!(!format!("{t:?}").contains("super-secret"));
        let p = policy();
        assert!(!format!("{:?}", who(&p, ADMIN)).contains(ADMIN));
    }

    #[test]
    fn the_file_is_re_read_when_it_changes_and_a_bad_edit_keeps_the_old_policy() {
        let dir = std::env::temp_dir().join(format!("concoord-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("auth");
        std::fs::write(&path, format!("token operator admin {ADMIN}\n")).unwrap();
        let file = AuthFile::load(path.clone()).unwrap();
        assert!(
            !file.reload(false).unwrap(),
            "unchanged content is not re-parsed"
        );
        std::fs::write(&path, format!("token app client {CLIENT}\n")).unwrap();
        assert!(file.reload(false).unwrap());
        let p = file.policy();
        assert_eq!(p.role_of(&who(&p, CLIENT)), Some(Role::Client));
        std::fs::write(&path, "token app nobody x\n").unwrap();
        let e = file.reload(false).unwrap_err().to_string();
        assert!(e.contains(":1:"), "{e}");
        let p = file.policy();
        assert_eq!(p.role_of(&who(&p, CLIENT)), Some(Role::Client));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
