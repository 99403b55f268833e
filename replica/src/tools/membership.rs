//! `concoord membership add|remove ADDRS REPLICA`: change the view one member at a time.

use crate::cli::{CliError, MembershipAction, MembershipArgs};
use crate::client::{add_member_over, remove_member_over};

pub async fn run(args: &MembershipArgs) -> Result<(), CliError> {
    let view = match &args.action {
        MembershipAction::Add {
            addrs,
            replica,
            creds,
        } => add_member_over(addrs, replica, args.timeout, creds.load()?).await?,
        MembershipAction::Remove {
            addrs,
            replica,
            creds,
        } => remove_member_over(addrs, replica, args.timeout, creds.load()?).await?,
    };
    let members: Vec<String> = view
        .members
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect();
    println!("view {}: {}", view.number, members.join(", "));
    Ok(())
}
