pub mod fake_apiserver;
#[path = "../../../replica/tests/tls_support/mod.rs"]
pub mod tls_support;
