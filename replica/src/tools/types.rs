//! `concoord type load | list | show`: user object types, which enter the group through
//! consensus (like Redis' `FUNCTION LOAD`), so that every replica runs the same code.

use crate::cli::{CliError, TypeAction, TypeArgs};
use crate::client::{Client, TypeSummary};
use crate::object::source;

fn print_summary(t: &TypeSummary, json: bool) -> Result<(), CliError> {
    if json {
        println!(
            "{}",
            serde_json::to_string(t).map_err(|e| CliError::Failed(e.to_string()))?
        );
    } else {
        println!(
            "{}\tsha256:{}\t{} bytes\t{} object(s)\tmethods: {}",
            t.name,
            t.sha256,
            t.size,
            t.objects,
            t.methods.join(", ")
        );
    }
    Ok(())
}

pub async fn run(a: &TypeArgs) -> Result<(), CliError> {
    match &a.action {
        TypeAction::Load {
            addrs,
            file,
            class,
            module,
            replace,
            json,
            creds,
        } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", file.display())))?;
            let module = match module {
                Some(m) => m.clone(),
                None => source::module_of(file).ok_or_else(|| {
                    CliError::Usage(format!("{}: no module name; give --module", file.display()))
                })?,
            };
            // No --class: the group takes the file's only class (and says so when it has
            // none or several).
            let class = class.as_deref().unwrap_or_default();
            let client = Client::connect(addrs, creds.client_options()?).await?;
            let outcome = client.define_type(&module, class, &text, *replace).await;
            let _ = client.close().await;
            print_summary(&outcome?, *json)
        }
        TypeAction::List { addrs, json, creds } => {
            let client = Client::connect(addrs, creds.client_options()?).await?;
            let outcome = client.list_types().await;
            let _ = client.close().await;
            for t in outcome? {
                print_summary(&t, *json)?;
            }
            Ok(())
        }
        TypeAction::Show {
            addrs,
            name,
            json,
            creds,
        } => {
            let client = Client::connect(addrs, creds.client_options()?).await?;
            let outcome = client.show_type(name).await;
            let _ = client.close().await;
            let t = outcome?;
            if *json {
                return print_summary(&t, true);
            }
            println!(
                "# {} sha256:{} ({} bytes, {} object(s))",
                t.name, t.sha256, t.size, t.objects
            );
            print!("{}", t.source.unwrap_or_default());
            Ok(())
        }
    }
}
