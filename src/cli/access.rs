//! Who may do what, for an administrator: create principals (`principal-create`),
//! grant and revoke roles, issue tokens, register client certificates,
//! revoke credentials; and for anyone, `whoami` and (administrators and
//! auditors) `principals`.
//!
//! A token is shown once, in the reply to the call that issued it: the
//! command prints it with a warning that it will not be shown again, or
//! writes it to a file only its owner can read (`--token-out FILE`), or
//! saves it where later commands look for it (`--save-token`).

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::ClientOptions;
use super::connect::{self, Conn, WriteSession, read_error};
use super::output::{Report, fields, ruled_table, section, table, write_report};
use crate::domain::access::Role;
use crate::pb;
use crate::pb::access_service_client::AccessServiceClient;

/// Commands on principals, roles and credentials.
#[derive(Subcommand, Clone, Debug)]
pub enum AccessCommand {
    /// Show who the credential in use belongs to, its roles and how it
    /// authenticated.
    #[command(name = "whoami")]
    WhoAmI,
    /// Create a principal (a person or a system) with its first roles and,
    /// optionally, a token. Administrators only.
    ///
    /// Examples: `principal-create hoa --name "Nguyễn Thị Hoa" --grant
    /// clerk:TB --token-out hoa.token`; `principal-create head-office
    /// --grant product-admin,manager,auditor --save-token`.
    PrincipalCreate(PrincipalCreateArgs),
    /// Grant a principal a role, institution-wide or in one branch.
    Grant(RoleArgs),
    /// End a principal's role in a scope (as it was granted).
    Revoke(RoleArgs),
    /// Issue a principal a new token; prints (or writes) it once, with its
    /// credential id and expiry.
    TokenIssue(TokenIssueArgs),
    /// Revoke a token or a client certificate by its credential id: it stops
    /// working at once.
    #[command(visible_alias = "token-revoke")]
    CredentialRevoke(CredentialRevokeArgs),
    /// Register a TLS client certificate (PEM) as a principal's credential;
    /// prints its credential id and SHA-256 fingerprint.
    CertificateRegister(CertificateRegisterArgs),
    /// List every principal with its roles and credentials, now or as they
    /// stood just after an entry.
    Principals(PrincipalsArgs),
    /// Show the access log: every read of the books (who, which method,
    /// what it named, when, outcome), oldest first.
    AccessLog(AccessLogArgs),
}

/// A role in a scope, as typed: `ROLE` (institution-wide) or `ROLE:BRANCH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The role's name.
    pub role: String,
    /// The branch; empty for the whole institution.
    pub branch_id: String,
}

impl Grant {
    fn to_pb(&self) -> pb::RoleGrant {
        pb::RoleGrant {
            role: self.role.clone(),
            branch_id: self.branch_id.clone(),
        }
    }
}

/// Parses `ROLE` or `ROLE:BRANCH`.
fn parse_grant(text: &str) -> Result<Grant, String> {
    let (role, branch) = match text.split_once(':') {
        Some((role, branch)) => (role.trim(), Some(branch.trim())),
        None => (text.trim(), None),
    };
    Role::parse("role", role).map_err(|e| e.to_string())?;
    if branch.is_some_and(str::is_empty) {
        return Err(format!(
            "{text:?}: give a branch after the colon (ROLE:BRANCH), or no colon for the whole institution"
        ));
    }
    Ok(Grant {
        role: role.to_owned(),
        branch_id: branch.unwrap_or_default().to_owned(),
    })
}

/// Parses one or more grants separated by commas: `clerk:TB,auditor`.
fn parse_grants(text: &str) -> Result<Vec<Grant>, String> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(parse_grant)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|grants| {
            if grants.is_empty() {
                Err("give a role: ROLE or ROLE:BRANCH".to_owned())
            } else {
                Ok(grants)
            }
        })
}

/// Arguments of `principal-create`.
#[derive(Args, Clone, Debug)]
pub struct PrincipalCreateArgs {
    /// The new principal's id, 1 to 64 characters of A-Z a-z 0-9 . _ @ -.
    pub id: String,
    /// A person's or a system's name [default: the id].
    #[arg(long)]
    pub name: Option<String>,
    /// A role to grant: ROLE for the whole institution or ROLE:BRANCH for
    /// one branch; several separated by commas, or the flag repeated. Roles:
    /// clerk, manager, product-admin, auditor, administrator.
    #[arg(long, value_name = "ROLE[:BRANCH]", value_parser = parse_grants)]
    pub grant: Vec<Vec<Grant>>,
    /// Also issue a token (printed once unless --save-token or --token-out).
    #[arg(long)]
    pub issue_token: bool,
    /// Days the token is valid, 1 to 366 [server default: 90]; implies --issue-token.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=366))]
    pub token_valid_days: Option<u32>,
    /// Issue a token and save it where later commands read it: FILE, or
    /// ~/.config/mfi-ledger/token (replacing the token saved there).
    #[arg(long, value_name = "FILE", num_args = 0..=1, conflicts_with = "token_out")]
    pub save_token: Option<Option<PathBuf>>,
    /// Issue a token and write it to FILE (mode 0600; FILE must not exist).
    #[arg(long, value_name = "FILE")]
    pub token_out: Option<PathBuf>,
}

/// Arguments of `grant` and `revoke`.
#[derive(Args, Clone, Debug)]
pub struct RoleArgs {
    /// The principal.
    pub principal: String,
    /// The role and its scope: ROLE (whole institution) or ROLE:BRANCH.
    #[arg(value_name = "ROLE[:BRANCH]", value_parser = parse_grant)]
    pub role: Grant,
}

/// Arguments of `token-issue`.
#[derive(Args, Clone, Debug)]
pub struct TokenIssueArgs {
    /// The principal the token authenticates.
    pub principal: String,
    /// Days the token is valid, 1 to 366 [server default: 90].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=366))]
    pub valid_days: Option<u32>,
    /// Write the token to FILE (mode 0600; FILE must not exist) instead of
    /// printing it.
    #[arg(long, value_name = "FILE")]
    pub token_out: Option<PathBuf>,
}

/// Arguments of `credential-revoke`.
#[derive(Args, Clone, Debug)]
pub struct CredentialRevokeArgs {
    /// The credential's id (shown when it was issued, and by `principals`).
    pub credential_id: u64,
}

/// Arguments of `certificate-register`.
#[derive(Args, Clone, Debug)]
pub struct CertificateRegisterArgs {
    /// The principal the certificate authenticates.
    pub principal: String,
    /// The client certificate, PEM.
    #[arg(long, value_name = "FILE")]
    pub pem: PathBuf,
}

/// Arguments of `principals`.
#[derive(Args, Clone, Debug)]
pub struct PrincipalsArgs {
    /// Show roles and credentials as they stood just after this entry
    /// [default: now].
    #[arg(long, value_name = "N")]
    pub as_of_sequence: Option<u64>,
}

/// Arguments of `access-log`.
#[derive(Args, Clone, Debug)]
pub struct AccessLogArgs {
    /// First record to show.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub from: u64,
    /// Most records to show.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: u32,
}

/// Runs an access command.
pub async fn run(options: &ClientOptions, command: AccessCommand) -> anyhow::Result<Report> {
    match command {
        AccessCommand::WhoAmI => whoami(&options.server).await,
        AccessCommand::Principals(args) => principals(&options.server, args).await,
        AccessCommand::AccessLog(args) => access_log(&options.server, args).await,
        AccessCommand::PrincipalCreate(args) => {
            principal_create(&options.write_session(), args).await
        }
        AccessCommand::Grant(args) => grant(&options.write_session(), args).await,
        AccessCommand::Revoke(args) => revoke(&options.write_session(), args).await,
        AccessCommand::TokenIssue(args) => token_issue(&options.write_session(), args).await,
        AccessCommand::CredentialRevoke(args) => {
            credential_revoke(&options.write_session(), args).await
        }
        AccessCommand::CertificateRegister(args) => {
            certificate_register(&options.write_session(), args).await
        }
    }
}

async fn client(server: &str) -> anyhow::Result<AccessServiceClient<Conn>> {
    Ok(AccessServiceClient::new(connect::channel(server).await?))
}

/// "institution" or "branch TB".
fn scope(branch_id: &str) -> String {
    if branch_id.is_empty() {
        "institution".to_owned()
    } else {
        format!("branch {branch_id}")
    }
}

/// "clerk (branch TB)".
fn role_label(grant: &pb::RoleGrant) -> String {
    format!("{} ({})", grant.role, scope(&grant.branch_id))
}

fn role_json(grant: &pb::RoleGrant) -> Value {
    json!({
        "role": grant.role,
        "branch_id": (!grant.branch_id.is_empty()).then_some(&grant.branch_id),
        "scope": scope(&grant.branch_id),
    })
}

/// `whoami`.
async fn whoami(server: &str) -> anyhow::Result<Report> {
    let r = client(server)
        .await?
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map_err(read_error)?
        .into_inner();
    let mut text = fields(&[
        ("principal", r.principal_id.clone()),
        ("name", r.name.clone()),
        ("credential", r.credential.clone()),
    ]);
    let mut roles = table(&["role", "scope"], &[]);
    for grant in &r.roles {
        roles.add_row(vec![grant.role.clone(), scope(&grant.branch_id)]);
    }
    text += &section("roles", &roles, "none");
    let json = json!({
        "principal_id": r.principal_id,
        "name": r.name,
        "credential": r.credential,
        "roles": r.roles.iter().map(role_json).collect::<Vec<_>>(),
    });
    Ok(Report { text, json })
}

/// Where an issued token goes.
enum TokenDestination {
    /// Printed once.
    Show,
    /// Written to a new file.
    File(PathBuf),
    /// Written to a file, replacing what is there (`--save-token`).
    Save(PathBuf),
}

impl TokenDestination {
    /// Checks, before anything is issued, that the token can be written:
    /// `--token-out`'s file must not exist and its directory must; the
    /// directory of `--save-token`'s file is created (mode 0700).
    fn prepare(&self) -> anyhow::Result<()> {
        match self {
            TokenDestination::Show => Ok(()),
            TokenDestination::File(path) => {
                if path.exists() {
                    bail!(
                        "--token-out {}: the file exists; remove it or name another",
                        path.display()
                    );
                }
                let parent = parent_dir(path);
                if !parent.is_dir() {
                    bail!(
                        "--token-out {}: no directory {}",
                        path.display(),
                        parent.display()
                    );
                }
                Ok(())
            }
            TokenDestination::Save(path) => {
                use std::os::unix::fs::DirBuilderExt;
                let parent = parent_dir(path);
                if !parent.is_dir() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                if path.is_dir() {
                    bail!("--save-token {}: is a directory", path.display());
                }
                Ok(())
            }
        }
    }

    /// Writes `token` where it goes; for [`TokenDestination::Show`], nothing.
    /// Returns a note for the report, or an error that names the credential
    /// to revoke, since the token was issued but is now lost.
    fn write(&self, token: &pb::IssuedToken) -> anyhow::Result<Option<PathBuf>> {
        let (path, replace) = match self {
            TokenDestination::Show => return Ok(None),
            TokenDestination::File(path) => (path, false),
            TokenDestination::Save(path) => (path, true),
        };
        let written = (|| {
            if replace {
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("removing {}", path.display()));
                    }
                }
            }
            crate::auth::write_secret(path, &token.token)
        })();
        written.map(|()| Some(path.clone())).map_err(|e| {
            anyhow!(
                "{}\nthe token (credential {id}) was issued but not saved, and is not shown \
                 again: revoke it with `credential-revoke {id}` and issue another",
                crate::cli::describe(&e),
                id = token.credential_id
            )
        })
    }
}

/// The directory `path` is in ("." for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// The lines and JSON fields that show an issued token: the token itself
/// (once, with a warning) or the file it was written to.
fn token_rows(
    token: &pb::IssuedToken,
    file: Option<&Path>,
    rows: &mut Vec<(&'static str, String)>,
    json: &mut serde_json::Map<String, Value>,
) {
    rows.push(("credential id", token.credential_id.to_string()));
    rows.push(("expires at", token.expires_at.clone()));
    json.insert("credential_id".into(), token.credential_id.into());
    json.insert("expires_at".into(), token.expires_at.clone().into());
    match file {
        Some(path) => {
            rows.push(("token file", path.display().to_string()));
            json.insert("token_file".into(), path.display().to_string().into());
        }
        None => {
            rows.push(("token", token.token.clone()));
            rows.push((
                "note",
                "this token is shown once and will not be shown again: store it now".to_owned(),
            ));
            json.insert("token".into(), token.token.clone().into());
        }
    }
}

/// `principal-create`.
async fn principal_create(
    session: &WriteSession,
    args: PrincipalCreateArgs,
) -> anyhow::Result<Report> {
    let destination = match (&args.save_token, &args.token_out) {
        (Some(_), Some(_)) => bail!("give --save-token or --token-out, not both"),
        (Some(Some(path)), None) => TokenDestination::Save(path.clone()),
        (Some(None), None) => {
            TokenDestination::Save(connect::default_token_file().ok_or_else(|| {
                anyhow!("--save-token: no home directory for the default token file; name a FILE")
            })?)
        }
        (None, Some(path)) => TokenDestination::File(path.clone()),
        (None, None) => TokenDestination::Show,
    };
    let issue_token = args.issue_token
        || args.token_valid_days.is_some()
        || !matches!(destination, TokenDestination::Show);
    if issue_token {
        destination.prepare()?;
    }
    let roles: Vec<Grant> = args.grant.into_iter().flatten().collect();
    let request = pb::CreatePrincipalRequest {
        context: session.context(),
        principal_id: args.id.clone(),
        name: args.name.clone().unwrap_or_else(|| args.id.clone()),
        roles: roles.iter().map(Grant::to_pb).collect(),
        issue_token,
        token_valid_days: args.token_valid_days.unwrap_or(0),
    };
    let response = client(&session.server)
        .await?
        .create_principal(request.clone())
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    let mut rows = vec![
        ("principal", request.principal_id.clone()),
        ("name", request.name.clone()),
        (
            "roles",
            if request.roles.is_empty() {
                "none".to_owned()
            } else {
                request
                    .roles
                    .iter()
                    .map(role_label)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
    ];
    let mut extra = serde_json::Map::new();
    extra.insert("principal_id".into(), request.principal_id.clone().into());
    extra.insert("name".into(), request.name.clone().into());
    extra.insert(
        "roles".into(),
        request
            .roles
            .iter()
            .map(role_json)
            .collect::<Vec<_>>()
            .into(),
    );
    match (issue_token, response.token) {
        (true, Some(token)) => {
            let file = destination.write(&token)?;
            token_rows(&token, file.as_deref(), &mut rows, &mut extra);
        }
        (true, None) => bail!(
            "the principal was created (entry {}) but the server sent no token: \
             issue one with `token-issue {}`",
            receipt.sequence,
            request.principal_id
        ),
        (false, _) => {}
    }
    Ok(write_report(
        &session.request_id,
        &receipt,
        rows,
        Value::Object(extra),
    ))
}

/// `grant`.
async fn grant(session: &WriteSession, args: RoleArgs) -> anyhow::Result<Report> {
    let request = pb::GrantRoleRequest {
        context: session.context(),
        principal_id: args.principal.clone(),
        role: Some(args.role.to_pb()),
    };
    let response = client(&session.server)
        .await?
        .grant_role(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    role_report(session, response.receipt, &args, "granted")
}

/// `revoke`.
async fn revoke(session: &WriteSession, args: RoleArgs) -> anyhow::Result<Report> {
    let request = pb::RevokeRoleRequest {
        context: session.context(),
        principal_id: args.principal.clone(),
        role: Some(args.role.to_pb()),
    };
    let response = client(&session.server)
        .await?
        .revoke_role(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    role_report(session, response.receipt, &args, "revoked")
}

fn role_report(
    session: &WriteSession,
    receipt: Option<pb::EntryReceipt>,
    args: &RoleArgs,
    done: &'static str,
) -> anyhow::Result<Report> {
    let receipt = session.receipt(receipt)?;
    let grant = args.role.to_pb();
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![
            ("principal", args.principal.clone()),
            (done, role_label(&grant)),
        ],
        json!({ "principal_id": args.principal, done: role_json(&grant) }),
    ))
}

/// `token-issue`.
async fn token_issue(session: &WriteSession, args: TokenIssueArgs) -> anyhow::Result<Report> {
    let destination = match &args.token_out {
        Some(path) => TokenDestination::File(path.clone()),
        None => TokenDestination::Show,
    };
    destination.prepare()?;
    let request = pb::IssueTokenRequest {
        context: session.context(),
        principal_id: args.principal.clone(),
        valid_days: args.valid_days.unwrap_or(0),
    };
    let response = client(&session.server)
        .await?
        .issue_token(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    let token = response.token.ok_or_else(|| {
        anyhow!(
            "the token was issued (entry {}) but the server did not send it: \
             revoke it with `credential-revoke {}`",
            receipt.sequence,
            receipt.sequence
        )
    })?;
    let file = destination.write(&token)?;
    let mut rows = vec![("principal", args.principal.clone())];
    let mut extra = serde_json::Map::new();
    extra.insert("principal_id".into(), args.principal.into());
    token_rows(&token, file.as_deref(), &mut rows, &mut extra);
    Ok(write_report(
        &session.request_id,
        &receipt,
        rows,
        Value::Object(extra),
    ))
}

/// `credential-revoke` (`token-revoke`).
async fn credential_revoke(
    session: &WriteSession,
    args: CredentialRevokeArgs,
) -> anyhow::Result<Report> {
    let request = pb::RevokeCredentialRequest {
        context: session.context(),
        credential_id: args.credential_id,
    };
    let response = client(&session.server)
        .await?
        .revoke_credential(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![("revoked credential", args.credential_id.to_string())],
        json!({ "credential_id": args.credential_id }),
    ))
}

/// `certificate-register`.
async fn certificate_register(
    session: &WriteSession,
    args: CertificateRegisterArgs,
) -> anyhow::Result<Report> {
    let pem = std::fs::read_to_string(&args.pem)
        .with_context(|| format!("reading the certificate {}", args.pem.display()))?;
    let request = pb::RegisterCertificateRequest {
        context: session.context(),
        principal_id: args.principal.clone(),
        certificate_pem: pem,
    };
    let response = client(&session.server)
        .await?
        .register_certificate(request)
        .await
        .map_err(|status| session.error(status))?
        .into_inner();
    let receipt = session.receipt(response.receipt)?;
    Ok(write_report(
        &session.request_id,
        &receipt,
        vec![
            ("principal", args.principal.clone()),
            ("credential id", response.credential_id.to_string()),
            ("fingerprint", response.fingerprint.clone()),
        ],
        json!({
            "principal_id": args.principal,
            "credential_id": response.credential_id,
            "fingerprint": response.fingerprint,
        }),
    ))
}

/// "never" for no expiry.
fn expiry(expires_at: &str) -> String {
    if expires_at.is_empty() {
        "never".to_owned()
    } else {
        expires_at.to_owned()
    }
}

/// `principals`: one table of principals and their roles, one of credentials.
async fn principals(server: &str, args: PrincipalsArgs) -> anyhow::Result<Report> {
    let r = client(server)
        .await?
        .list_principals(pb::ListPrincipalsRequest {
            as_of_sequence: args.as_of_sequence.unwrap_or(0),
        })
        .await
        .map_err(read_error)?
        .into_inner();
    let mut people = ruled_table(&["principal", "name", "roles", "created by entry"], &[3]);
    let mut credentials = table(
        &[
            "credential",
            "principal",
            "kind",
            "expires at",
            "revoked by entry",
        ],
        &[0, 4],
    );
    for p in &r.principals {
        let roles = if p.roles.is_empty() {
            "none".to_owned()
        } else {
            p.roles
                .iter()
                .map(role_label)
                .collect::<Vec<_>>()
                .join("\n")
        };
        people.add_row(vec![
            p.principal_id.clone(),
            p.name.clone(),
            roles,
            p.created_sequence.to_string(),
        ]);
        for c in &p.credentials {
            credentials.add_row(vec![
                c.credential_id.to_string(),
                p.principal_id.clone(),
                c.kind.clone(),
                expiry(&c.expires_at),
                match c.revoked_sequence {
                    0 => "-".to_owned(),
                    sequence => sequence.to_string(),
                },
            ]);
        }
    }
    let mut text = fields(&[("as of entry", r.as_of_sequence.to_string())]);
    text += &section("principals", &people, "none");
    text += &section("credentials", &credentials, "none");
    let json = json!({
        "as_of_sequence": r.as_of_sequence,
        "principals": r.principals.iter().map(|p| json!({
            "principal_id": p.principal_id,
            "name": p.name,
            "created_sequence": p.created_sequence,
            "roles": p.roles.iter().map(role_json).collect::<Vec<_>>(),
            "credentials": p.credentials.iter().map(|c| json!({
                "credential_id": c.credential_id,
                "kind": c.kind,
                "expires_at": (!c.expires_at.is_empty()).then_some(&c.expires_at),
                "revoked_sequence": (c.revoked_sequence != 0).then_some(c.revoked_sequence),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    Ok(Report { text, json })
}

async fn access_log(server: &str, args: AccessLogArgs) -> anyhow::Result<Report> {
    let audit = crate::cli::connect::audit(server).await?;
    let mut audit = audit;
    let r = audit
        .list_access_log(pb::ListAccessLogRequest {
            from_sequence: args.from,
            page_size: args.limit,
        })
        .await
        .map_err(read_error)?
        .into_inner();
    let mut rows = table(
        &["record", "at", "principal", "method", "subject", "outcome"],
        &[0],
    );
    for record in &r.records {
        rows.add_row(vec![
            record.sequence.to_string(),
            record.recorded_at.clone(),
            match record.principal.as_str() {
                "" => "-".to_owned(),
                principal => principal.to_owned(),
            },
            record.method.clone(),
            record.subject.clone(),
            record.outcome.clone(),
        ]);
    }
    let mut text = section("access log", &rows, "no records");
    if r.next_sequence != 0 {
        text += &format!(
            "more records follow: access-log --from {}\n",
            r.next_sequence
        );
    }
    let json = json!({
        "records": r.records.iter().map(|record| json!({
            "sequence": record.sequence,
            "recorded_at": record.recorded_at,
            "principal": record.principal,
            "method": record.method,
            "subject": record.subject,
            "outcome": record.outcome,
            "hash": record.hash,
        })).collect::<Vec<_>>(),
        "next_sequence": (r.next_sequence != 0).then_some(r.next_sequence),
    });
    Ok(Report { text, json })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_roles_with_and_without_a_branch() {
        assert_eq!(
            parse_grants("clerk:TB").unwrap(),
            vec![Grant {
                role: "clerk".into(),
                branch_id: "TB".into()
            }]
        );
        let several = parse_grants("product-admin,manager:HN,auditor").unwrap();
        assert_eq!(
            several
                .iter()
                .map(|g| (g.role.as_str(), g.branch_id.as_str()))
                .collect::<Vec<_>>(),
            [("product-admin", ""), ("manager", "HN"), ("auditor", "")]
        );
        assert!(parse_grant("teller").unwrap_err().contains("not a role"));
        assert!(parse_grant("clerk:").is_err());
        assert!(parse_grants(",").is_err());
    }
}
