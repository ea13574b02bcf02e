//! `domain`, `alias` and `transport`: the rows that route mail but hold no mailbox.

use anyhow::Result;
use serde_json::json;
use vmail_directory::Directory;

use crate::{print_list, stored, AliasCmd, Ctx, DomainCmd, TransportCmd};

pub(crate) async fn domain(ctx: &Ctx, dir: &Directory, c: DomainCmd) -> Result<()> {
    match c {
        DomainCmd::Add { domain } => {
            dir.add_domain(&domain).await?;
            ctx.done(format!("domain {} added", stored(dir, &domain)));
        }
        DomainCmd::Del { domain, force } => {
            dir.del_domain(&domain, force).await?;
            ctx.done(format!("domain {} deleted", stored(dir, &domain)));
        }
        DomainCmd::Disable { domain } => {
            dir.set_domain_active(&domain, false).await?;
            ctx.done(format!("domain {} disabled", stored(dir, &domain)));
        }
        DomainCmd::Enable { domain } => {
            dir.set_domain_active(&domain, true).await?;
            ctx.done(format!("domain {} enabled", stored(dir, &domain)));
        }
        DomainCmd::List => {
            // Names only under --json, as before `domains.active` existed (scripts read it).
            print_list(
                ctx,
                &dir.list_domains_flagged().await?,
                |(d, _)| json!(d),
                |(d, active)| format!("{d}{}", if *active { "" } else { "\t(disabled)" }),
            );
        }
    }
    Ok(())
}

pub(crate) async fn alias(ctx: &Ctx, dir: &Directory, c: AliasCmd) -> Result<()> {
    match c {
        AliasCmd::Add {
            source,
            destinations,
        } => {
            dir.add_alias(&source, &destinations).await?;
            ctx.done(format!(
                "alias {} -> {}",
                stored(dir, &source),
                destinations.join(", ")
            ));
        }
        AliasCmd::Del {
            source,
            destination,
        } => {
            dir.del_alias(&source, destination.as_deref()).await?;
            ctx.done(match destination {
                Some(d) => format!("removed {d} from alias {}", stored(dir, &source)),
                None => format!("alias {} deleted", stored(dir, &source)),
            });
        }
        AliasCmd::List { domain } => {
            print_list(
                ctx,
                &dir.list_aliases(domain.as_deref()).await?,
                |(s, d)| json!({ "source": s, "destinations": d }),
                |(s, d)| format!("{s}\t{}", d.join(", ")),
            );
        }
    }
    Ok(())
}

pub(crate) async fn transport(ctx: &Ctx, dir: &Directory, c: TransportCmd) -> Result<()> {
    match c {
        TransportCmd::Set { domain, transport } => {
            dir.set_transport(&domain, &transport).await?;
            ctx.done(format!(
                "transport of {} set to {transport}",
                stored(dir, &domain)
            ));
        }
        TransportCmd::Del { domain } => {
            dir.del_transport(&domain).await?;
            ctx.done(format!("transport of {} removed", stored(dir, &domain)));
        }
        TransportCmd::List => {
            print_list(
                ctx,
                &dir.list_transports().await?,
                |(d, t)| json!({ "domain": d, "transport": t }),
                |(d, t)| format!("{d}\t{t}"),
            );
        }
    }
    Ok(())
}
