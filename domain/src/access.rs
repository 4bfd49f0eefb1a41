//! Who may do what: principals, the roles they hold in a scope, and the
//! credentials they authenticate with.
//!
//! Everything here is state derived from journal entries
//! ([`AccessCommand`]s, decided and applied like any other command), so who
//! could do what on any past date is answerable from the journal, and
//! `verify` re-checks every entry's principal against the grants in force
//! when it was written.
//!
//! [`Role::may`] is the role × action table: the one place that says which
//! role may do what. `api::access` maps every RPC to an [`Action`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use rust_decimal::Decimal;

use super::command::{CommandBody, Money};
use super::entry::Hash;
use super::error::{DomainError, echo};
use super::ids::{Actor, BranchId, Name, PrincipalId, ProductId};

/// A role a principal holds within a [`Scope`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// A branch's daily writes and reads of its branch.
    Clerk,
    /// What a clerk may do, plus corrections (reversals, write-offs), the
    /// period-end work and the branch's funding.
    Manager,
    /// Head office: the product catalogue; branches, centers and groups.
    ProductAdmin,
    /// Read-only: the branch's (or every branch's) books and the journal.
    Auditor,
    /// Principals, roles and credentials; never money.
    Administrator,
}

/// What an RPC or a command does, as far as access is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// A branch's daily writes: members, savings, disbursements,
    /// repayments, collection sheets.
    Write,
    /// Corrections: reversals and write-offs.
    Correct,
    /// A branch's period-end work: posting savings interest, closing its
    /// books through a date, and reopening them.
    Close,
    /// Money put into a branch's cash from head office or capital, and
    /// given back: the branch's funding, which its manager records.
    Fund,
    /// The checker's side of maker-checker: approving or rejecting another
    /// principal's pending request.
    Approve,
    /// Branches, centers and groups.
    Organize,
    /// Changes to the product catalogue.
    Catalogue,
    /// Reads of a branch's books: balances, members, loans, totals.
    ReadBranch,
    /// Reads of the product catalogue and schedule previews.
    ReadCatalogue,
    /// The journal page by page, with hashes.
    ReadJournal,
    /// Principals, roles and credentials.
    Administer,
    /// Who holds which roles, now or on a past entry.
    ReadAccess,
    /// Who the caller is; the ledger's head. Any principal.
    Identify,
}

/// Where an action applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// In one branch: a grant for that branch or the institution.
    Branch,
    /// Institution-wide only: a grant for the institution.
    Institution,
    /// A grant of the role in any scope.
    Anywhere,
}

impl Action {
    /// Every action, in the order the README's table lists them.
    pub const ALL: [Action; 13] = [
        Action::Write,
        Action::Correct,
        Action::Close,
        Action::Fund,
        Action::Approve,
        Action::Organize,
        Action::Catalogue,
        Action::ReadBranch,
        Action::ReadCatalogue,
        Action::ReadJournal,
        Action::Administer,
        Action::ReadAccess,
        Action::Identify,
    ];

    /// Where a grant must apply for the action.
    pub fn reach(self) -> Reach {
        match self {
            Action::Write
            | Action::Correct
            | Action::Close
            | Action::Fund
            | Action::Approve
            | Action::Organize
            | Action::ReadBranch => Reach::Branch,
            Action::Catalogue | Action::ReadJournal | Action::Administer | Action::ReadAccess => {
                Reach::Institution
            }
            Action::ReadCatalogue | Action::Identify => Reach::Anywhere,
        }
    }

    /// Where a grant must apply, as the README's table says it.
    pub fn reach_name(self) -> &'static str {
        match self.reach() {
            Reach::Branch => "the branch",
            Reach::Institution => "the institution",
            Reach::Anywhere => "any scope",
        }
    }

    /// What the action does, for messages ("may not ...").
    pub fn describe(self) -> &'static str {
        match self {
            Action::Write => "write a branch's daily transactions",
            Action::Correct => "reverse entries or write loans off",
            Action::Close => {
                "do a branch's period-end work (post savings interest, close or reopen its books)"
            }
            Action::Fund => "record a branch's funding (from head office or capital, or returned)",
            Action::Approve => "approve or reject another principal's pending request",
            Action::Organize => "create branches, centers or groups",
            Action::Catalogue => "change the product catalogue",
            Action::ReadBranch => "read a branch's books",
            Action::ReadCatalogue => "read the product catalogue",
            Action::ReadJournal => "read the journal",
            Action::Administer => "manage principals, roles and credentials",
            Action::ReadAccess => "list principals and their roles",
            Action::Identify => "identify itself",
        }
    }
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Clerk,
        Role::Manager,
        Role::ProductAdmin,
        Role::Auditor,
        Role::Administrator,
    ];

    /// The role × action table.
    pub fn may(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Clerk => matches!(action, Write | ReadBranch | ReadCatalogue | Identify),
            Role::Manager => matches!(
                action,
                Write | Correct | Close | Fund | Approve | ReadBranch | ReadCatalogue | Identify
            ),
            Role::ProductAdmin => matches!(action, Organize | Catalogue | ReadCatalogue | Identify),
            Role::Auditor => matches!(
                action,
                ReadBranch | ReadCatalogue | ReadJournal | ReadAccess | Identify
            ),
            Role::Administrator => matches!(action, Administer | ReadAccess | Identify),
        }
    }

    /// The role's name on the wire and in the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Role::Clerk => "clerk",
            Role::Manager => "manager",
            Role::ProductAdmin => "product-admin",
            Role::Auditor => "auditor",
            Role::Administrator => "administrator",
        }
    }

    /// The role named `text` (as [`Role::name`] gives it), for `field`.
    pub fn parse(field: &str, text: &str) -> Result<Role, DomainError> {
        Role::ALL
            .into_iter()
            .find(|role| role.name() == text)
            .ok_or_else(|| {
                DomainError::invalid(
                    field,
                    format!(
                        "{} is not a role; use one of {}",
                        echo(text),
                        Role::ALL.map(Role::name).join(", ")
                    ),
                )
            })
    }

    /// The roles that may do `action`, for messages.
    pub fn allowed(action: Action) -> Vec<Role> {
        Role::ALL.into_iter().filter(|r| r.may(action)).collect()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a role applies: one branch, or every branch and the institution.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// The whole institution: every branch, the catalogue, the journal.
    Institution,
    /// One branch.
    Branch(BranchId),
}

impl Scope {
    /// True when a grant in this scope lets a role do an action of `reach`
    /// in `branch` (`None`: not in any one branch).
    pub fn covers(&self, reach: Reach, branch: Option<&BranchId>) -> bool {
        match (reach, self) {
            (Reach::Anywhere, _) | (_, Scope::Institution) => true,
            (Reach::Institution, Scope::Branch(_)) => false,
            (Reach::Branch, Scope::Branch(own)) => branch == Some(own),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Institution => f.write_str("institution"),
            Scope::Branch(branch) => write!(f, "branch {branch}"),
        }
    }
}

/// A role in a scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoleGrant {
    pub role: Role,
    pub scope: Scope,
}

impl fmt::Display for RoleGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.role, self.scope)
    }
}

/// How a principal proves who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CredentialKind {
    /// A bearer token; the ledger keeps only its SHA-256.
    Token,
    /// A TLS client certificate; the ledger keeps the SHA-256 of its DER.
    Certificate,
}

impl CredentialKind {
    fn name(self) -> &'static str {
        match self {
            CredentialKind::Token => "token",
            CredentialKind::Certificate => "certificate",
        }
    }
}

/// A credential as a command gives it: never the secret, only its digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCredential {
    pub kind: CredentialKind,
    /// SHA-256 of the token, or of the certificate's DER.
    pub digest: Hash,
    /// Microseconds since the Unix epoch, UTC; required for tokens.
    pub expires_at_micros: Option<i64>,
}

/// Changes to who may do what. Only an administrator may make them, except
/// [`AccessCommand::Bootstrap`], which only the first entry about access
/// may be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessCommand {
    /// The first administrator, with an institution-wide grant and a
    /// token: what `serve` writes on a ledger with no principal yet. The
    /// entry's principal is the administrator itself.
    Bootstrap {
        principal_id: PrincipalId,
        name: Name,
        token: NewCredential,
    },
    /// A principal, with its first roles and, optionally, a credential.
    CreatePrincipal {
        principal_id: PrincipalId,
        name: Name,
        grants: Vec<RoleGrant>,
        credential: Option<NewCredential>,
    },
    /// A role in a scope, from this entry on.
    GrantRole {
        principal_id: PrincipalId,
        grant: RoleGrant,
    },
    /// The end of a role in a scope, from this entry on.
    RevokeRole {
        principal_id: PrincipalId,
        grant: RoleGrant,
    },
    /// A further credential for a principal.
    IssueCredential {
        principal_id: PrincipalId,
        credential: NewCredential,
    },
    /// The end of a credential (named by the entry that issued it).
    RevokeCredential { credential_id: u64 },
    /// A checker turns down a pending request (named by the entry that
    /// recorded it); it will never take effect.
    RejectRequest { request: u64, reason: Name },
    /// Disbursements of a product above `above` need a manager's approval
    /// (`None`: no limit). Set by a product admin.
    SetApprovalLimit {
        product_id: ProductId,
        above: Option<Money>,
    },
}

/// Most roles given in one command.
pub const GRANTS_MAX: usize = 16;

impl AccessCommand {
    /// Snake-case name, as shown in the journal.
    pub fn name(&self) -> &'static str {
        match self {
            AccessCommand::Bootstrap { .. } => "bootstrap_access",
            AccessCommand::CreatePrincipal { .. } => "create_principal",
            AccessCommand::GrantRole { .. } => "grant_role",
            AccessCommand::RevokeRole { .. } => "revoke_role",
            AccessCommand::IssueCredential { .. } => "issue_credential",
            AccessCommand::RevokeCredential { .. } => "revoke_credential",
            AccessCommand::RejectRequest { .. } => "reject_request",
            AccessCommand::SetApprovalLimit { .. } => "set_approval_limit",
        }
    }
}

/// When something happened: the entry and its time of recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub sequence: u64,
    pub at_micros: i64,
}

/// A role held from one entry, until another revoked it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub grant: RoleGrant,
    pub granted: Stamp,
    pub revoked: Option<Stamp>,
}

/// A principal and every role it ever held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub id: PrincipalId,
    pub name: Name,
    pub created: Stamp,
    pub grants: Vec<Grant>,
}

impl Principal {
    /// The roles it holds now.
    pub fn current(&self) -> impl Iterator<Item = &RoleGrant> {
        self.grants
            .iter()
            .filter(|g| g.revoked.is_none())
            .map(|g| &g.grant)
    }

    /// The roles it held just after entry `sequence`.
    pub fn held_after(&self, sequence: u64) -> impl Iterator<Item = &RoleGrant> {
        self.grants
            .iter()
            .filter(move |g| {
                g.granted.sequence <= sequence && g.revoked.is_none_or(|r| r.sequence > sequence)
            })
            .map(|g| &g.grant)
    }

    /// True when a role it holds now may do `action` in `branch` (any
    /// principal may identify itself, with or without roles).
    pub fn may(&self, action: Action, branch: Option<&BranchId>) -> bool {
        action == Action::Identify
            || self
                .current()
                .any(|g| g.role.may(action) && g.scope.covers(action.reach(), branch))
    }

    /// True when a role it holds now may do `action` in some scope.
    pub fn may_somewhere(&self, action: Action) -> bool {
        action == Action::Identify || self.current().any(|g| g.role.may(action))
    }
}

/// A credential and its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The entry that issued it.
    pub id: u64,
    pub principal: PrincipalId,
    pub kind: CredentialKind,
    pub digest: Hash,
    pub issued_at_micros: i64,
    pub expires_at_micros: Option<i64>,
    pub revoked: Option<Stamp>,
}

/// Why a credential does not authenticate anyone. The caller hears only
/// UNAUTHENTICATED; the reason goes to the server's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("unknown credential")]
    Unknown,
    #[error("credential expired")]
    Expired,
    #[error("credential revoked")]
    Revoked,
}

/// A command recorded as waiting for a checker's approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRequest {
    /// The entry that recorded it.
    pub sequence: u64,
    /// Who asked (the maker).
    pub maker: PrincipalId,
    /// Who entered it, as the maker's client said.
    pub actor: Actor,
    /// The branch it is in.
    pub branch: BranchId,
    /// What it does once approved.
    pub command: CommandBody,
    pub requested_at_micros: i64,
    /// No approval is accepted from then on.
    pub expires_at_micros: i64,
    /// Approved or rejected, and by which entry.
    pub resolution: Option<Resolution>,
}

/// How a pending request ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolution {
    /// Approved by `by`: entry `sequence` is the command taking effect.
    Approved { by: PrincipalId, sequence: u64 },
    /// Rejected by `by` in entry `sequence`.
    Rejected {
        by: PrincipalId,
        sequence: u64,
        reason: Name,
    },
}

/// How long a pending request waits for approval.
pub const APPROVAL_WAIT_DAYS: i64 = 7;

/// Every principal and credential.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    principals: BTreeMap<PrincipalId, Principal>,
    credentials: BTreeMap<u64, Credential>,
    /// Requests waiting for (or given) a checker's decision, by the entry
    /// that recorded them.
    pending: BTreeMap<u64, PendingRequest>,
    /// Disbursements above these amounts need approval, by product.
    approval_limits: BTreeMap<ProductId, Money>,
    /// Digest -> credential id, rebuilt from `credentials`.
    #[serde(skip)]
    by_digest: HashMap<Hash, u64>,
}

impl Access {
    /// Rebuilds what is derived from the stored fields (after decoding).
    pub fn reindex(&mut self) {
        self.by_digest = self
            .credentials
            .values()
            .map(|c| (c.digest, c.id))
            .collect();
    }

    /// True before the first principal.
    pub fn is_empty(&self) -> bool {
        self.principals.is_empty()
    }

    /// A principal.
    pub fn principal(&self, id: &PrincipalId) -> Option<&Principal> {
        self.principals.get(id)
    }

    /// Every principal, by id.
    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.principals.values()
    }

    /// Every credential, by id.
    pub fn credentials(&self) -> impl Iterator<Item = &Credential> {
        self.credentials.values()
    }

    /// Every request that needed approval, by the entry that recorded it.
    pub fn pending_requests(&self) -> impl Iterator<Item = &PendingRequest> {
        self.pending.values()
    }

    /// The request recorded by entry `sequence`.
    pub fn pending_request(&self, sequence: u64) -> Option<&PendingRequest> {
        self.pending.get(&sequence)
    }

    /// The amount above which disbursements of `product` need approval.
    pub fn approval_limit(&self, product: &ProductId) -> Option<Decimal> {
        self.approval_limits.get(product).map(|limit| limit.amount)
    }

    /// Checks that `approval` may make `command` (by `maker`) take effect
    /// at `now_micros`: the request is pending and unexpired, it is this
    /// command by this maker, and the checker is another principal who may
    /// approve in the request's branch.
    pub fn check_approval(
        &self,
        approval: &super::entry::Approval,
        maker: &PrincipalId,
        command: &CommandBody,
        now_micros: i64,
    ) -> Result<(), DomainError> {
        let request = approval.request;
        let pending = self.pending.get(&request).ok_or_else(|| {
            DomainError::not_found("request", "pending request", request.to_string())
        })?;
        if &pending.maker != maker || &pending.command != command {
            return Err(DomainError::invalid(
                "request",
                format!("entry {request} recorded another request"),
            ));
        }
        if approval.by == pending.maker {
            return Err(DomainError::PermissionDenied {
                message: format!(
                    "principal {} made request {request} and may not approve it: \
                     another manager of its branch must",
                    approval.by
                ),
            });
        }
        self.authorize(&approval.by, Action::Approve, Some(&pending.branch))?;
        check_undecided(request, pending)?;
        if now_micros >= pending.expires_at_micros {
            return Err(DomainError::precondition(
                "request",
                format!(
                    "request {request} expired at {}; the maker asks again",
                    micros_text(pending.expires_at_micros)
                ),
            ));
        }
        Ok(())
    }

    /// Records a pending request (applying its entry).
    pub fn add_pending(&mut self, request: PendingRequest) -> Result<(), String> {
        if self.pending.contains_key(&request.sequence) {
            return Err(format!("request {} is already pending", request.sequence));
        }
        self.pending.insert(request.sequence, request);
        Ok(())
    }

    /// Marks a request approved by entry `sequence` (applying it).
    pub fn resolve_approved(
        &mut self,
        approval: &super::entry::Approval,
        sequence: u64,
    ) -> Result<(), String> {
        let pending = self
            .pending
            .get_mut(&approval.request)
            .ok_or_else(|| format!("no pending request {}", approval.request))?;
        if pending.resolution.is_some() {
            return Err(format!("request {} is already decided", approval.request));
        }
        pending.resolution = Some(Resolution::Approved {
            by: approval.by.clone(),
            sequence,
        });
        Ok(())
    }

    /// The principal a credential of `kind` with `digest` authenticates at
    /// `now_micros`.
    pub fn authenticate(
        &self,
        kind: CredentialKind,
        digest: &Hash,
        now_micros: i64,
    ) -> Result<&Principal, AuthFailure> {
        let credential = self
            .by_digest
            .get(digest)
            .and_then(|id| self.credentials.get(id))
            .filter(|c| c.kind == kind)
            .ok_or(AuthFailure::Unknown)?;
        if credential.revoked.is_some() {
            return Err(AuthFailure::Revoked);
        }
        if credential
            .expires_at_micros
            .is_some_and(|at| at <= now_micros)
        {
            return Err(AuthFailure::Expired);
        }
        self.principals
            .get(&credential.principal)
            .ok_or(AuthFailure::Unknown)
    }

    /// Checks that `principal` may do `action` in `branch` (`None`: in no
    /// one branch, which only an institution-wide grant covers, except for
    /// actions allowed anywhere).
    pub fn authorize(
        &self,
        principal: &PrincipalId,
        action: Action,
        branch: Option<&BranchId>,
    ) -> Result<(), DomainError> {
        match self.principals.get(principal) {
            Some(p) if p.may(action, branch) => Ok(()),
            _ => Err(denied(principal, action)),
        }
    }

    /// Checks that `principal` holds a role that may do `action` somewhere.
    pub fn authorize_somewhere(
        &self,
        principal: &PrincipalId,
        action: Action,
    ) -> Result<(), DomainError> {
        match self.principals.get(principal) {
            Some(p) if p.may_somewhere(action) => Ok(()),
            _ => Err(denied(principal, action)),
        }
    }

    /// Decides an access command by `by` (the entry's principal), changing nothing.
    pub fn decide(
        &self,
        command: &AccessCommand,
        by: &PrincipalId,
        now_micros: i64,
    ) -> Result<(), DomainError> {
        if let AccessCommand::Bootstrap {
            principal_id,
            token,
            ..
        } = command
        {
            if !self.is_empty() {
                return Err(DomainError::precondition(
                    "principal_id",
                    "the ledger already has principals; an administrator creates the next ones",
                ));
            }
            if principal_id != by {
                return Err(DomainError::invalid(
                    "principal_id",
                    "the first administrator is created by itself",
                ));
            }
            return self.check_new_credential("token", token, now_micros);
        }
        match command {
            AccessCommand::RejectRequest { request, .. } => {
                let pending = self.pending.get(request).ok_or_else(|| {
                    DomainError::not_found("request", "pending request", request.to_string())
                })?;
                self.authorize(by, Action::Approve, Some(&pending.branch))?;
                return check_undecided(*request, pending);
            }
            AccessCommand::SetApprovalLimit { .. } => {
                return self.authorize(by, Action::Catalogue, None);
            }
            _ => {}
        }
        self.authorize(by, Action::Administer, None)?;
        match command {
            AccessCommand::Bootstrap { .. }
            | AccessCommand::RejectRequest { .. }
            | AccessCommand::SetApprovalLimit { .. } => unreachable!("handled above"),
            AccessCommand::CreatePrincipal {
                principal_id,
                grants,
                credential,
                ..
            } => {
                if self.principals.contains_key(principal_id) {
                    return Err(DomainError::already_exists(
                        "principal_id",
                        "principal",
                        principal_id.as_str(),
                    ));
                }
                check_grants(grants)?;
                if let Some(credential) = credential {
                    self.check_new_credential("credential", credential, now_micros)?;
                }
                Ok(())
            }
            AccessCommand::GrantRole {
                principal_id,
                grant,
            } => {
                let principal = self.find("principal_id", principal_id)?;
                if principal.current().any(|g| g == grant) {
                    return Err(DomainError::precondition(
                        "role",
                        format!("principal {principal_id} already holds {grant}"),
                    ));
                }
                Ok(())
            }
            AccessCommand::RevokeRole {
                principal_id,
                grant,
            } => {
                let principal = self.find("principal_id", principal_id)?;
                if !principal.current().any(|g| g == grant) {
                    return Err(DomainError::precondition(
                        "role",
                        format!("principal {principal_id} does not hold {grant}"),
                    ));
                }
                Ok(())
            }
            AccessCommand::IssueCredential {
                principal_id,
                credential,
            } => {
                self.find("principal_id", principal_id)?;
                self.check_new_credential("credential", credential, now_micros)
            }
            AccessCommand::RevokeCredential { credential_id } => {
                match self.credentials.get(credential_id) {
                    None => Err(DomainError::not_found(
                        "credential_id",
                        "credential",
                        credential_id.to_string(),
                    )),
                    Some(c) if c.revoked.is_some() => Err(DomainError::precondition(
                        "credential_id",
                        format!("credential {credential_id} is already revoked"),
                    )),
                    Some(_) => Ok(()),
                }
            }
        }
    }

    /// Applies a decided access command by `by`, recorded at `stamp`.
    pub fn apply(
        &mut self,
        command: &AccessCommand,
        by: &PrincipalId,
        stamp: Stamp,
    ) -> Result<(), String> {
        match command {
            AccessCommand::Bootstrap {
                principal_id,
                name,
                token,
            } => {
                let grant = RoleGrant {
                    role: Role::Administrator,
                    scope: Scope::Institution,
                };
                self.add_principal(principal_id, name, std::slice::from_ref(&grant), stamp)?;
                self.add_credential(principal_id, token, stamp)
            }
            AccessCommand::CreatePrincipal {
                principal_id,
                name,
                grants,
                credential,
            } => {
                self.add_principal(principal_id, name, grants, stamp)?;
                match credential {
                    Some(credential) => self.add_credential(principal_id, credential, stamp),
                    None => Ok(()),
                }
            }
            AccessCommand::GrantRole {
                principal_id,
                grant,
            } => {
                let principal = self.find_mut(principal_id)?;
                principal.grants.push(Grant {
                    grant: grant.clone(),
                    granted: stamp,
                    revoked: None,
                });
                Ok(())
            }
            AccessCommand::RevokeRole {
                principal_id,
                grant,
            } => {
                let principal = self.find_mut(principal_id)?;
                let held = principal
                    .grants
                    .iter_mut()
                    .find(|g| g.revoked.is_none() && &g.grant == grant)
                    .ok_or_else(|| format!("principal {principal_id} does not hold {grant}"))?;
                held.revoked = Some(stamp);
                Ok(())
            }
            AccessCommand::IssueCredential {
                principal_id,
                credential,
            } => self.add_credential(principal_id, credential, stamp),
            AccessCommand::RevokeCredential { credential_id } => {
                let credential = self
                    .credentials
                    .get_mut(credential_id)
                    .ok_or_else(|| format!("no credential {credential_id}"))?;
                credential.revoked = Some(stamp);
                Ok(())
            }
            AccessCommand::RejectRequest { request, reason } => {
                let pending = self
                    .pending
                    .get_mut(request)
                    .ok_or_else(|| format!("no pending request {request}"))?;
                if pending.resolution.is_some() {
                    return Err(format!("request {request} is already decided"));
                }
                pending.resolution = Some(Resolution::Rejected {
                    by: by.clone(),
                    sequence: stamp.sequence,
                    reason: reason.clone(),
                });
                Ok(())
            }
            AccessCommand::SetApprovalLimit { product_id, above } => {
                match above {
                    Some(limit) => self.approval_limits.insert(product_id.clone(), *limit),
                    None => self.approval_limits.remove(product_id),
                };
                Ok(())
            }
        }
    }

    fn add_principal(
        &mut self,
        id: &PrincipalId,
        name: &Name,
        grants: &[RoleGrant],
        stamp: Stamp,
    ) -> Result<(), String> {
        if self.principals.contains_key(id) {
            return Err(format!("principal {id} already exists"));
        }
        let grants = grants
            .iter()
            .map(|grant| Grant {
                grant: grant.clone(),
                granted: stamp,
                revoked: None,
            })
            .collect();
        self.principals.insert(
            id.clone(),
            Principal {
                id: id.clone(),
                name: name.clone(),
                created: stamp,
                grants,
            },
        );
        Ok(())
    }

    fn add_credential(
        &mut self,
        principal: &PrincipalId,
        credential: &NewCredential,
        stamp: Stamp,
    ) -> Result<(), String> {
        if self.by_digest.contains_key(&credential.digest) {
            return Err("a credential with this digest exists".to_owned());
        }
        self.by_digest.insert(credential.digest, stamp.sequence);
        self.credentials.insert(
            stamp.sequence,
            Credential {
                id: stamp.sequence,
                principal: principal.clone(),
                kind: credential.kind,
                digest: credential.digest,
                issued_at_micros: stamp.at_micros,
                expires_at_micros: credential.expires_at_micros,
                revoked: None,
            },
        );
        Ok(())
    }

    fn find(&self, field: &str, id: &PrincipalId) -> Result<&Principal, DomainError> {
        self.principals
            .get(id)
            .ok_or_else(|| DomainError::not_found(field, "principal", id.as_str()))
    }

    fn find_mut(&mut self, id: &PrincipalId) -> Result<&mut Principal, String> {
        self.principals
            .get_mut(id)
            .ok_or_else(|| format!("no principal {id}"))
    }

    fn check_new_credential(
        &self,
        field: &str,
        credential: &NewCredential,
        now_micros: i64,
    ) -> Result<(), DomainError> {
        if self.by_digest.contains_key(&credential.digest) {
            return Err(DomainError::already_exists(
                &format!("{field}.digest"),
                "credential",
                "with this digest",
            ));
        }
        match (credential.kind, credential.expires_at_micros) {
            (CredentialKind::Token, None) => Err(DomainError::invalid(
                &format!("{field}.expires_at"),
                "a token needs an expiry",
            )),
            (_, Some(at)) if at <= now_micros => Err(DomainError::invalid(
                &format!("{field}.expires_at"),
                format!("the {} would already be expired", credential.kind.name()),
            )),
            _ => Ok(()),
        }
    }
}

/// Refuses a request already approved or rejected.
fn check_undecided(request: u64, pending: &PendingRequest) -> Result<(), DomainError> {
    match &pending.resolution {
        None => Ok(()),
        Some(Resolution::Approved { sequence, .. }) => Err(DomainError::precondition(
            "request",
            format!("request {request} was already approved: entry {sequence}"),
        )),
        Some(Resolution::Rejected { sequence, .. }) => Err(DomainError::precondition(
            "request",
            format!("request {request} was rejected by entry {sequence}"),
        )),
    }
}

/// A time as RFC 3339, for messages.
fn micros_text(micros: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| micros.to_string())
}

/// Refuses an empty-scoped or repeated list of grants.
fn check_grants(grants: &[RoleGrant]) -> Result<(), DomainError> {
    super::command::check_len("grants", grants.len(), GRANTS_MAX, true, "roles")?;
    for (i, grant) in grants.iter().enumerate() {
        if grants[..i].contains(grant) {
            return Err(DomainError::invalid(
                &format!("grants[{i}]"),
                format!("{grant} is given twice"),
            ));
        }
    }
    Ok(())
}

/// The refusal of `action` to `principal`: names what it may not do and
/// which roles may, never what the object holds or which branch it is in.
fn denied(principal: &PrincipalId, action: Action) -> DomainError {
    let roles = Role::allowed(action)
        .into_iter()
        .map(Role::name)
        .collect::<Vec<_>>();
    let scope = match action.reach() {
        Reach::Branch => " for the branch concerned or the institution",
        Reach::Institution => " for the institution",
        Reach::Anywhere => "",
    };
    DomainError::PermissionDenied {
        message: format!(
            "principal {principal} may not {}: that needs the {} role{scope}",
            action.describe(),
            roles.join(" or "),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branch(id: &str) -> BranchId {
        BranchId::parse("b", id).unwrap()
    }

    #[test]
    fn a_branch_grant_covers_its_branch_only_and_nothing_institution_wide() {
        let tb = Scope::Branch(branch("TB"));
        assert!(tb.covers(Reach::Branch, Some(&branch("TB"))));
        assert!(!tb.covers(Reach::Branch, Some(&branch("HN"))));
        assert!(!tb.covers(Reach::Branch, None));
        assert!(!tb.covers(Reach::Institution, None));
        assert!(tb.covers(Reach::Anywhere, None));
        assert!(Scope::Institution.covers(Reach::Branch, Some(&branch("HN"))));
        assert!(Scope::Institution.covers(Reach::Institution, None));
    }

    #[test]
    fn an_administrator_never_writes_money_and_an_auditor_never_writes() {
        for action in [Action::Write, Action::Correct, Action::Catalogue] {
            assert!(!Role::Administrator.may(action));
            assert!(!Role::Auditor.may(action));
        }
        assert!(Role::Manager.may(Action::Correct));
        assert!(!Role::Clerk.may(Action::Correct));
    }

    #[test]
    fn roles_parse_from_their_names_only() {
        for role in Role::ALL {
            assert_eq!(Role::parse("role", role.name()).unwrap(), role);
        }
        let refused = Role::parse("role", "root").unwrap_err().to_string();
        assert!(
            refused.contains("role") && refused.contains("clerk"),
            "{refused}"
        );
    }
}
