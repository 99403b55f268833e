//! `concoord membership add|remove ADDRS REPLICA`: change the view one member at a time.

use crate::cli::{CliError, MembershipAction, MembershipArgs};
use crate::client::{add_member, remove_member};

pub async fn run(args: &MembershipArgs) -> Result<(), CliError> {
    let view = match &args.action {
        MembershipAction::Add { addrs, replica } => {
            add_member(addrs, replica, args.timeout).await?
        }
        MembershipAction::Remove { addrs, replica } => {
            remove_member(addrs, replica, args.timeout).await?
        }
    };
    let members: Vec<String> = view
        .members
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect();
    println!("view {}: {}", view.number, members.join(", "));
    Ok(())
}
