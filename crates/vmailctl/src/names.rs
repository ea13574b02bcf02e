//! `domain`, `alias` and `transport`: the rows that route mail but hold no mailbox.

use anyhow::Result;
use serde_json::json;
use vmail_directory::Directory;

use crate::{stored, AliasCmd, Ctx, DomainCmd, TransportCmd};

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
            let list = dir.list_domains_flagged().await?;
            if ctx.json {
                // Names only, as before `domains.active` existed (scripts read this shape).
                let names: Vec<_> = list.iter().map(|(d, _)| d).collect();
                println!("{}", json!(names));
            } else {
                for (d, active) in list {
                    println!("{d}{}", if active { "" } else { "\t(disabled)" });
                }
            }
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
            let list = dir.list_aliases(domain.as_deref()).await?;
            if ctx.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(s, d)| json!({ "source": s, "destinations": d }))
                    .collect();
                println!("{}", json!(v));
            } else {
                for (s, d) in list {
                    println!("{s}\t{}", d.join(", "));
                }
            }
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
            let list = dir.list_transports().await?;
            if ctx.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(d, t)| json!({ "domain": d, "transport": t }))
                    .collect();
                println!("{}", json!(v));
            } else {
                for (d, t) in list {
                    println!("{d}\t{t}");
                }
            }
        }
    }
    Ok(())
}
