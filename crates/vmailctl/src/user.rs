//! `user`: mailbox users, their passwords and their per-user columns.

use anyhow::Result;
use serde_json::json;
use vmail_directory::{Directory, UserChanges};

use crate::secret::{new_password, read_hash};
use crate::{print_list, stored, Ctx, UserCmd, YesNo};

/// The hash to store: read as given (`--hashed`) or made from a new password.
fn password_hash(ctx: &Ctx, hashed: bool) -> Result<String> {
    let (default, scheme) = ctx.schemes()?;
    if hashed {
        return read_hash(default);
    }
    let pw = new_password()?;
    Ok(vmail_passwd::hash(scheme, pw.as_bytes())?)
}

pub(crate) async fn user(ctx: &Ctx, dir: &Directory, c: UserCmd) -> Result<()> {
    match c {
        UserCmd::Add {
            email,
            quota,
            hashed,
        } => {
            let hash = password_hash(ctx, hashed)?;
            dir.add_user(&email, &hash, quota).await?;
            ctx.done(format!("user {} added", stored(dir, &email)));
        }
        UserCmd::Del { email } => {
            dir.del_user(&email).await?;
            ctx.done(format!("user {} deleted", stored(dir, &email)));
        }
        UserCmd::List { domain } => {
            print_list(
                ctx,
                &dir.list_users(domain.as_deref()).await?,
                |(e, a)| json!({ "email": e, "active": a }),
                |(e, active)| format!("{e}{}", if *active { "" } else { "\t(disabled)" }),
            );
        }
        UserCmd::Show { email } => show(ctx, dir, &email).await?,
        UserCmd::Set {
            email,
            quota,
            services,
            active,
        } => {
            let changes = UserChanges {
                quota_bytes: quota,
                services: services.map(|s| {
                    (!s.trim().eq_ignore_ascii_case("all"))
                        .then(|| s.split(',').map(str::to_string).collect())
                }),
                active: active.map(|a| a == YesNo::Yes),
            };
            dir.set_user(&email, &changes).await?;
            ctx.done(format!("user {} changed", stored(dir, &email)));
        }
        UserCmd::Passwd { email, hashed } => {
            let hash = password_hash(ctx, hashed)?;
            dir.set_password(&email, &hash).await?;
            ctx.done(format!("password of {} changed", stored(dir, &email)));
        }
        UserCmd::Disable { email } => {
            dir.set_active(&email, false).await?;
            ctx.done(format!("user {} disabled", stored(dir, &email)));
        }
        UserCmd::Enable { email } => {
            dir.set_active(&email, true).await?;
            ctx.done(format!("user {} enabled", stored(dir, &email)));
        }
    }
    Ok(())
}

/// `user show`: the row as the daemons read it (userdb fields included), never the hash.
async fn show(ctx: &Ctx, dir: &Directory, email: &str) -> Result<()> {
    let Some(u) = dir.user(email).await? else {
        return Err(vmail_directory::Error::Missing(format!("user {}", stored(dir, email))).into());
    };
    let quota = u.quota_bytes.unwrap_or(0);
    let services = u.services.as_ref().map(|s| s.join(","));
    if ctx.json {
        println!(
            "{}",
            json!({
                "email": u.email, "active": u.active, "quota": quota,
                "services": services, "uid": u.uid, "gid": u.gid,
                "home": u.home, "mail": u.mail,
                "has_password": u.password.is_some(),
            })
        );
    } else {
        // doveadm user's layout: one `field\tvalue` per line.
        println!("email\t{}", u.email);
        println!("active\t{}", if u.active { "yes" } else { "no" });
        println!("quota\t{quota}");
        println!("services\t{}", services.as_deref().unwrap_or("all"));
        println!("uid\t{}", u.uid);
        println!("gid\t{}", u.gid);
        println!("home\t{}", u.home);
        println!("mail\t{}", u.mail);
    }
    Ok(())
}
