//! `concoord membership add|remove ADDRS REPLICA`: change the view one member at a time.

use crate::cli::{CliError, MembershipAction, MembershipArgs};
use crate::client::{add_member_over, remove_member_over};

pub async fn run(args: &MembershipArgs) -> Result<(), CliError> {
    let view = match &args.action {
        MembershipAction::Add {
            addrs,
            replica,
            tls,
        } => add_member_over(addrs, replica, args.timeout, tls.load()?.as_ref()).await?,
        MembershipAction::Remove {
            addrs,
            replica,
            tls,
        } => remove_member_over(addrs, replica, args.timeout, tls.load()?.as_ref()).await?,
    };
    let members: Vec<String> = view
        .members
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect();
    println!("view {}: {}", view.number, members.join(", "));
    Ok(())
}
