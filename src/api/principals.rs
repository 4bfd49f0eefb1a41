//! `AccessService`: principals, roles and credentials. Every change is a
//! journal entry decided by the ledger (`domain::access`); this module
//! makes the tokens (the ledger sees only their digests) and shows each
//! token once, in the reply to the call that issued it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tonic::{Request, Response, Status};

use crate::auth;
use crate::domain::DomainError;
use crate::domain::access::{
    AccessCommand, CredentialKind, NewCredential, Principal, Role, RoleGrant, Scope,
};
use crate::domain::command::{Command, CommandBody};
use crate::domain::entry::Entry;
use crate::domain::ids::{BranchId, Name, PrincipalId};
use crate::ledger::Ledger;
use crate::pb;
use crate::pb::access_service_server::AccessService;

use super::access::{self, Caller};
use super::convert;
use super::status;

/// Days a token lasts when the request does not say.
pub const TOKEN_VALID_DAYS_DEFAULT: u32 = 90;
/// Longest a token may last, in days.
pub const TOKEN_VALID_DAYS_MAX: u32 = 366;

/// The access service over a running ledger.
pub struct AccessApi {
    ledger: Arc<Ledger>,
}

impl AccessApi {
    /// Serves the principals of `ledger`.
    pub fn new(ledger: Arc<Ledger>) -> AccessApi {
        AccessApi { ledger }
    }

    /// Submits `body` by `caller` under the request's context.
    async fn submit(
        &self,
        caller: &Caller,
        context: Option<pb::WriteContext>,
        body: Result<AccessCommand, DomainError>,
    ) -> Result<Arc<Entry>, Status> {
        let command = (|| {
            let (request_id, actor) = convert::context(context)?;
            Ok::<_, DomainError>(Command {
                request_id,
                actor,
                principal: Some(caller.principal.clone()),
                approval: None,
                body: CommandBody::Access(body?),
            })
        })()
        .map_err(|e| status::from_domain(&e))?;
        self.ledger
            .submit(command)
            .await
            .map_err(status::from_submit)
    }

    /// A new token valid for `days` (0: the default) from now.
    fn token(&self, field: &str, days: u32) -> Result<(auth::NewToken, DateTime<Utc>), Status> {
        let days = match days {
            0 => TOKEN_VALID_DAYS_DEFAULT,
            1..=TOKEN_VALID_DAYS_MAX => days,
            _ => {
                return Err(status::from_domain(&DomainError::invalid(
                    field,
                    format!(
                        "{days} days; 1 to {TOKEN_VALID_DAYS_MAX} allowed (0 means {TOKEN_VALID_DAYS_DEFAULT})"
                    ),
                )));
            }
        };
        let token = auth::new_token().map_err(|e| {
            tracing::error!(error = %e, "no random bytes for a token");
            Status::internal("internal error making a token; the cause is in the server's log")
        })?;
        let expires = self.ledger.now() + chrono::Duration::days(i64::from(days));
        Ok((token, expires))
    }
}

/// A role grant from the wire.
fn grant_in(field: &str, grant: Option<pb::RoleGrant>) -> Result<RoleGrant, DomainError> {
    let grant = grant.ok_or_else(|| DomainError::invalid(field, "is required"))?;
    Ok(RoleGrant {
        role: Role::parse(&format!("{field}.role"), &grant.role)?,
        scope: if grant.branch_id.is_empty() {
            Scope::Institution
        } else {
            Scope::Branch(BranchId::parse(
                &format!("{field}.branch_id"),
                &grant.branch_id,
            )?)
        },
    })
}

/// A role grant for the wire.
fn grant_out(grant: &RoleGrant) -> pb::RoleGrant {
    pb::RoleGrant {
        role: grant.role.name().to_owned(),
        branch_id: match &grant.scope {
            Scope::Institution => String::new(),
            Scope::Branch(branch) => branch.to_string(),
        },
    }
}

fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn issued(token: auth::NewToken, entry: &Entry, expires: DateTime<Utc>) -> pb::IssuedToken {
    pb::IssuedToken {
        token: token.secret,
        credential_id: entry.body.sequence,
        expires_at: rfc3339(expires.timestamp_micros()),
    }
}

fn principal_id(text: &str) -> Result<PrincipalId, DomainError> {
    PrincipalId::parse("principal_id", text)
}

fn principal_out(
    principal: &Principal,
    as_of: u64,
    access: &crate::domain::access::Access,
) -> pb::Principal {
    pb::Principal {
        principal_id: principal.id.to_string(),
        name: principal.name.to_string(),
        roles: principal.held_after(as_of).map(grant_out).collect(),
        credentials: access
            .credentials()
            .filter(|c| c.principal == principal.id && c.id <= as_of)
            .map(|c| pb::Credential {
                credential_id: c.id,
                kind: match c.kind {
                    CredentialKind::Token => "token",
                    CredentialKind::Certificate => "certificate",
                }
                .to_owned(),
                expires_at: c.expires_at_micros.map(rfc3339).unwrap_or_default(),
                revoked_sequence: c
                    .revoked
                    .filter(|r| r.sequence <= as_of)
                    .map_or(0, |r| r.sequence),
            })
            .collect(),
        created_sequence: principal.created.sequence,
    }
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = access::caller(&request)?;
        let principal = caller
            .access
            .principal(&caller.principal)
            .ok_or_else(|| Status::unauthenticated("the principal no longer exists"))?;
        Ok(Response::new(pb::WhoAmIResponse {
            principal_id: principal.id.to_string(),
            name: principal.name.to_string(),
            roles: principal.current().map(grant_out).collect(),
            credential: match caller.credential {
                CredentialKind::Token => "token",
                CredentialKind::Certificate => "certificate",
            }
            .to_owned(),
        }))
    }

    async fn create_principal(
        &self,
        request: Request<pb::CreatePrincipalRequest>,
    ) -> Result<Response<pb::CreatePrincipalResponse>, Status> {
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let token = match r.issue_token {
            true => Some(self.token("token_valid_days", r.token_valid_days)?),
            false => None,
        };
        let body = (|| {
            let grants = r
                .roles
                .into_iter()
                .enumerate()
                .map(|(i, grant)| grant_in(&format!("roles[{i}]"), Some(grant)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(AccessCommand::CreatePrincipal {
                principal_id: principal_id(&r.principal_id)?,
                name: Name::parse("name", &r.name)?,
                grants,
                credential: token
                    .as_ref()
                    .map(|(token, expires)| auth::token_credential(token.digest, *expires)),
            })
        })();
        let entry = self.submit(&caller, r.context, body).await?;
        Ok(Response::new(pb::CreatePrincipalResponse {
            receipt: Some(convert::receipt(&entry)),
            token: token.map(|(token, expires)| issued(token, &entry, expires)),
        }))
    }

    async fn grant_role(
        &self,
        request: Request<pb::GrantRoleRequest>,
    ) -> Result<Response<pb::GrantRoleResponse>, Status> {
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let body = (|| {
            Ok(AccessCommand::GrantRole {
                principal_id: principal_id(&r.principal_id)?,
                grant: grant_in("role", r.role)?,
            })
        })();
        let entry = self.submit(&caller, r.context, body).await?;
        Ok(Response::new(pb::GrantRoleResponse {
            receipt: Some(convert::receipt(&entry)),
        }))
    }

    async fn revoke_role(
        &self,
        request: Request<pb::RevokeRoleRequest>,
    ) -> Result<Response<pb::RevokeRoleResponse>, Status> {
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let body = (|| {
            Ok(AccessCommand::RevokeRole {
                principal_id: principal_id(&r.principal_id)?,
                grant: grant_in("role", r.role)?,
            })
        })();
        let entry = self.submit(&caller, r.context, body).await?;
        Ok(Response::new(pb::RevokeRoleResponse {
            receipt: Some(convert::receipt(&entry)),
        }))
    }

    async fn issue_token(
        &self,
        request: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, Status> {
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let (token, expires) = self.token("valid_days", r.valid_days)?;
        let body =
            principal_id(&r.principal_id).map(|principal_id| AccessCommand::IssueCredential {
                principal_id,
                credential: auth::token_credential(token.digest, expires),
            });
        let entry = self.submit(&caller, r.context, body).await?;
        Ok(Response::new(pb::IssueTokenResponse {
            receipt: Some(convert::receipt(&entry)),
            token: Some(issued(token, &entry, expires)),
        }))
    }

    async fn register_certificate(
        &self,
        request: Request<pb::RegisterCertificateRequest>,
    ) -> Result<Response<pb::RegisterCertificateResponse>, Status> {
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let der = CertificateDer::from_pem_slice(r.certificate_pem.as_bytes()).map_err(|e| {
            status::from_domain(&DomainError::invalid(
                "certificate_pem",
                format!("is not a PEM certificate: {e}"),
            ))
        })?;
        let digest = auth::certificate_digest(der.as_ref());
        let body =
            principal_id(&r.principal_id).map(|principal_id| AccessCommand::IssueCredential {
                principal_id,
                credential: NewCredential {
                    kind: CredentialKind::Certificate,
                    digest,
                    expires_at_micros: None,
                },
            });
        let entry = self.submit(&caller, r.context, body).await?;
        Ok(Response::new(pb::RegisterCertificateResponse {
            receipt: Some(convert::receipt(&entry)),
            credential_id: entry.body.sequence,
            fingerprint: hex::encode(digest),
        }))
    }

    async fn revoke_credential(
        &self,
        request: Request<pb::RevokeCredentialRequest>,
    ) -> Result<Response<pb::RevokeCredentialResponse>, Status> {
        let caller = access::caller(&request)?;
        let r = request.into_inner();
        let body = match r.credential_id {
            0 => Err(DomainError::invalid(
                "credential_id",
                "is required (1 or more)",
            )),
            credential_id => Ok(AccessCommand::RevokeCredential { credential_id }),
        };
        let entry = self.submit(&caller, r.context, body).await?;
        Ok(Response::new(pb::RevokeCredentialResponse {
            receipt: Some(convert::receipt(&entry)),
        }))
    }

    async fn list_principals(
        &self,
        request: Request<pb::ListPrincipalsRequest>,
    ) -> Result<Response<pb::ListPrincipalsResponse>, Status> {
        let caller = access::caller(&request)?;
        caller.authorize(crate::domain::access::Action::ReadAccess, None)?;
        let last = self.ledger.read(|state| state.last_sequence());
        let as_of = match request.into_inner().as_of_sequence {
            0 => last,
            sequence => sequence.min(last),
        };
        let access = self.ledger.access();
        Ok(Response::new(pb::ListPrincipalsResponse {
            principals: access
                .principals()
                .filter(|p| p.created.sequence <= as_of)
                .map(|p| principal_out(p, as_of, &access))
                .collect(),
            as_of_sequence: as_of,
        }))
    }
}
