//! `concoord call`: one call (or create / delete / list) through a fresh client session.

use crate::cli::{CallArgs, CliError};
use crate::client::Client;
use crate::command::Value;
use crate::json::{parse_cli_arg, to_json_line};

/// What the arguments ask for.
#[derive(Debug, PartialEq)]
pub enum Request {
    Call {
        object: String,
        method: String,
        args: Vec<Value>,
    },
    Create {
        name: String,
        type_name: String,
        args: Vec<Value>,
    },
    Delete {
        name: String,
    },
    List,
}

impl Request {
    pub fn from_args(a: &CallArgs) -> Result<Request, CliError> {
        let values = |rest: &[String]| rest.iter().map(|s| parse_cli_arg(s)).collect();
        if let Some(create) = &a.create {
            let [name, type_name] = create.as_slice() else {
                return Err(CliError::Usage("--create takes NAME TYPE".into()));
            };
            return Ok(Request::Create {
                name: name.clone(),
                type_name: type_name.clone(),
                args: values(&a.rest),
            });
        }
        if let Some(name) = &a.delete {
            no_extra(&a.rest, "--delete NAME")?;
            return Ok(Request::Delete { name: name.clone() });
        }
        if a.list {
            no_extra(&a.rest, "--list")?;
            return Ok(Request::List);
        }
        match a.rest.as_slice() {
            [object, method, args @ ..] => Ok(Request::Call {
                object: object.clone(),
                method: method.clone(),
                args: values(args),
            }),
            _ => Err(CliError::Usage(
                "expected OBJECT METHOD [ARG...], or --create NAME TYPE, --delete NAME, --list"
                    .into(),
            )),
        }
    }
}

fn no_extra(rest: &[String], form: &str) -> Result<(), CliError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "{form} takes no further arguments (got {})",
            rest.join(" ")
        )))
    }
}

/// Performs the request; the text to print on stdout, if any.
pub async fn execute(client: &Client, req: Request) -> Result<Option<String>, CliError> {
    Ok(match req {
        Request::Call {
            object,
            method,
            args,
        } => Some(to_json_line(&client.call(&object, &method, args).await?)),
        Request::Create {
            name,
            type_name,
            args,
        } => {
            client.create(&name, &type_name, args).await?;
            None
        }
        Request::Delete { name } => {
            client.delete(&name).await?;
            None
        }
        Request::List => {
            let objects = client.list().await?;
            Some(serde_json::to_string(&objects).map_err(|e| CliError::Failed(e.to_string()))?)
        }
    })
}

pub async fn run(a: &CallArgs) -> Result<(), CliError> {
    let req = Request::from_args(a)?;
    let mut opts = a.creds.client_options()?;
    if let Some(limit) = a.timeout {
        opts.call_timeout = Some(limit);
        opts.blocking_timeout = Some(limit);
    }
    let client = Client::connect(&a.addrs, opts).await?;
    let outcome = execute(&client, req).await;
    if let Ok(Some(text)) = &outcome {
        println!("{text}");
    }
    if a.hold && outcome.is_ok() {
        // The client keeps the session alive in the background meanwhile.
        let _ = tokio::signal::ctrl_c().await;
    }
    // Ending the session releases anything the call acquired at once.
    let _ = client.close().await;
    outcome.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn request(args: &[&str]) -> Result<Request, CliError> {
        let argv = ["concoord", "call", "h:1"].iter().chain(args.iter());
        let Command::Call(a) = Cli::try_parse_from(argv).unwrap().command else {
            panic!()
        };
        Request::from_args(&a)
    }

    #[test]
    fn argument_forms() {
        assert_eq!(
            request(&["c", "add", "5", "x", "[1]"]).unwrap(),
            Request::Call {
                object: "c".into(),
                method: "add".into(),
                args: vec![
                    Value::from(5),
                    Value::from("x"),
                    Value::Array(vec![Value::from(1)])
                ],
            }
        );
        assert_eq!(
            request(&["--create", "q", "Queue", "2"]).unwrap(),
            Request::Create {
                name: "q".into(),
                type_name: "Queue".into(),
                args: vec![Value::from(2)],
            }
        );
        assert_eq!(
            request(&["--delete", "q"]).unwrap(),
            Request::Delete { name: "q".into() }
        );
        assert_eq!(request(&["--list"]).unwrap(), Request::List);
        assert!(request(&["counter"]).is_err());
        assert!(request(&[]).is_err());
        assert!(request(&["--list", "extra"]).is_err());
    }
}
