//! `concoord object -o module.Class [-p PROXYTYPE]`: ConCoord 1.1's proxy generator. It
//! writes `<module>proxy.py` next to the module: a Python class with the methods of the
//! user's class, each a call through the Python client (`concoord.userproxy`).

use crate::cli::{CliError, ObjectArgs};
use crate::object::sandbox::{self, Code, Method};
use crate::object::source;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Python source of the proxy for `class` with `methods`.
pub fn render(
    spec: &str,
    class: &str,
    sha256: &str,
    from: &str,
    methods: &[Method],
    blocking: bool,
) -> String {
    let mut out = String::new();
    let names: Vec<String> = methods.iter().map(|m| format!("{:?}", m.name)).collect();
    let _ = writeln!(
        out,
        "\"\"\"Proxy of {class}, written by `concoord object -o {spec}{}` from\n{from}\n(sha256 {sha256}). Every method is one call through consensus on the replicated\nobject; the constructor connects: {class}(\"host:port, host:port\").\n\"\"\"\n",
        if blocking { " -p 1" } else { "" }
    );
    let _ = writeln!(
        out,
        "from concoord.userproxy import NOARG, call_args, proxy_base\n\n"
    );
    let _ = writeln!(
        out,
        "class {class}(proxy_base({class:?}, ({}{}), blocking={})):",
        names.join(", "),
        if names.len() == 1 { "," } else { "" },
        if blocking { "True" } else { "False" }
    );
    for m in methods {
        let _ = writeln!(out, "{}", method(m));
    }
    out
}

fn method(m: &Method) -> String {
    let Some(params) = &m.params else {
        return format!(
            "    def {name}(self, *args):\n        return self._call({name:?}, args)\n",
            name = m.name
        );
    };
    let first_default = params.len().saturating_sub(m.defaults);
    let mut signature = vec!["self".to_string()];
    for (i, p) in params.iter().enumerate() {
        signature.push(if i >= first_default {
            format!("{p}=NOARG")
        } else {
            p.clone()
        });
    }
    if m.varargs {
        signature.push("*args".into());
    }
    let mut values = params.clone();
    if m.varargs {
        values.push("rest=args".into());
    }
    format!(
        "    def {name}({sig}):\n        return self._call({name:?}, call_args({values}))\n",
        name = m.name,
        sig = signature.join(", "),
        values = values.join(", "),
    )
}

pub fn run(a: &ObjectArgs) -> Result<(), CliError> {
    if a.proxytype > 1 {
        return Err(CliError::Usage(format!(
            "-p {}: batching proxies (2, 3) are not supported; use 0 (basic) or 1 (blocking)",
            a.proxytype
        )));
    }
    let blocking = a.proxytype == 1;
    let types = crate::object::ObjectTypes::builtin();
    if let Some(builtin) = types.resolve(&a.objectname) {
        // The built-ins have their proxies in the package; the file re-exports one, so
        // `from semaphoreproxy import Semaphore` works as in the seed.
        let module = builtin.default_name();
        let class = builtin.class_name();
        let path = PathBuf::from(format!("{module}proxy.py"));
        let text = format!(
            "\"\"\"Proxy of the built-in {}, written by `concoord object`.\"\"\"\n\nfrom concoord.proxy.{module} import {class}\n\n__all__ = [{class:?}]\n",
            builtin.dotted_name()
        );
        return write(&path, &text, a.verbose);
    }
    let found =
        source::find(&a.objectname, &a.object_path).map_err(|e| CliError::Failed(e.to_string()))?;
    let code = Code::new(&found.source, &found.class);
    let info = sandbox::define(&code)
        .map_err(|e| CliError::Failed(format!("{}: {e}", found.path.display())))?;
    let tail = found.module.rsplit('.').next().unwrap_or(&found.module);
    let dir = found.path.parent().map(PathBuf::from).unwrap_or_default();
    let path = dir.join(format!("{tail}proxy.py"));
    let text = render(
        &a.objectname,
        &found.class,
        &code.sha256,
        &found.path.display().to_string(),
        &info.methods,
        blocking,
    );
    write(&path, &text, a.verbose)
}

fn write(path: &std::path::Path, text: &str, verbose: bool) -> Result<(), CliError> {
    std::fs::write(path, text)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
    if verbose {
        print!("{text}");
    }
    println!("Wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_keep_their_parameters_and_defaults() {
        let m = Method {
            name: "f".into(),
            params: Some(vec!["a".into(), "b".into()]),
            defaults: 1,
            varargs: true,
        };
        assert_eq!(
            method(&m),
            "    def f(self, a, b=NOARG, *args):\n        return self._call(\"f\", call_args(a, b, rest=args))\n"
        );
        let opaque = Method {
            name: "g".into(),
            params: None,
            defaults: 0,
            varargs: false,
        };
        assert!(method(&opaque).contains("def g(self, *args)"));
        let only_rest = Method {
            name: "h".into(),
            params: Some(vec![]),
            defaults: 0,
            varargs: true,
        };
        assert!(
            method(&only_rest).contains("call_args(rest=args)"),
            "{}",
            method(&only_rest)
        );
    }
}
