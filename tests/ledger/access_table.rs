//! The role × RPC table, cell by cell, against the real server.
//!
//! Every role is held by two principals: one for branch TB, one for the
//! whole institution. Each calls every RPC of [`RPCS`] (the table itself, so
//! an RPC added without a case here fails the test) in its own branch TB and
//! in another branch HN (RPCs outside any branch once). What the server
//! answers is compared with what the table says ([`Role::may`] and
//! [`Scope::covers`]): an allowed call is never refused for access (it may
//! still be refused for business reasons), a call the table forbids is
//! refused with PERMISSION_DENIED and leaves the journal as it was; a read
//! never writes; and a call without a credential is UNAUTHENTICATED.
//! Every mismatch is collected, and the failure lists them cell by cell.

use std::future::Future;
use std::pin::Pin;

use mfi_ledger::api::access::{RPCS, Rpc};
use mfi_ledger::checkpoint::{KeyKind, Note, Signer};
use mfi_ledger::domain::access::{Action, Reach, Role, RoleGrant, Scope};
use mfi_ledger::domain::ids::{BranchId, PrincipalId};
use mfi_ledger::pb;
use mfi_ledger::pb::access_service_client::AccessServiceClient;
use mfi_ledger::pb::audit_service_client::AuditServiceClient;
use mfi_ledger::pb::books_service_client::BooksServiceClient;
use mfi_ledger::pb::branch_service_client::BranchServiceClient;
use mfi_ledger::pb::operations_service_client::OperationsServiceClient;
use mfi_ledger::pb::product_service_client::ProductServiceClient;
use mfi_ledger::pb::proof_service_client::ProofServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::support::{
    App, Conn, TODAY, admin_token, application, connect, ctx, flat_weekly, product_rules,
    spawn_app, vnd,
};

/// The branch the branch-scoped principals hold their role in.
const OWN: &str = "TB";
/// Another branch.
const OTHER: &str = "HN";
/// The principal the access RPCs act on.
const SUBJECT: &str = "subject";

/// A client of each of the ledger's services, over one connection.
#[derive(Clone)]
struct Clients {
    branch: BranchServiceClient<Conn>,
    products: ProductServiceClient<Conn>,
    audit: AuditServiceClient<Conn>,
    access: AccessServiceClient<Conn>,
    proofs: ProofServiceClient<Conn>,
    books: BooksServiceClient<Conn>,
    operations: OperationsServiceClient<Conn>,
}

impl Clients {
    /// Clients sending `token`, or no credential at all.
    async fn new(app: &App, token: Option<&str>) -> Clients {
        let conn = match token {
            Some(token) => connect(app.address, token).await,
            None => {
                let channel = Channel::from_shared(format!("http://{}", app.address))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
                Conn::new(
                    channel,
                    mfi_ledger::cli::connect::Bearer::new(None).unwrap(),
                )
            }
        };
        Clients {
            branch: BranchServiceClient::new(conn.clone()),
            products: ProductServiceClient::new(conn.clone()),
            audit: AuditServiceClient::new(conn.clone()),
            access: AccessServiceClient::new(conn.clone()),
            proofs: ProofServiceClient::new(conn.clone()),
            books: BooksServiceClient::new(conn.clone()),
            operations: OperationsServiceClient::new(conn),
        }
    }
}

/// A principal holding one role in one scope.
struct Principal {
    grant: RoleGrant,
    clients: Clients,
    token: String,
}

impl Principal {
    fn label(&self) -> String {
        let scope = match &self.grant.scope {
            Scope::Institution => "institution".to_owned(),
            Scope::Branch(branch) => branch.to_string(),
        };
        format!("{}@{scope}", self.grant.role)
    }

    /// What the table says: may this principal do `action` in `branch`?
    fn may(&self, action: Action, branch: Option<&BranchId>) -> bool {
        action == Action::Identify
            || (self.grant.role.may(action) && self.grant.scope.covers(action.reach(), branch))
    }
}

/// One principal for each role in each of branch TB and the institution.
async fn principals(app: &App) -> Vec<Principal> {
    let admin = PrincipalId::parse("p", mfi_ledger::auth::FIRST_ADMINISTRATOR).unwrap();
    let scopes = [
        ("tb", Scope::Branch(branch_id(OWN))),
        ("all", Scope::Institution),
    ];
    let mut principals = Vec::new();
    for role in Role::ALL {
        for (suffix, scope) in &scopes {
            let grant = RoleGrant {
                role,
                scope: scope.clone(),
            };
            let id = format!("{}-{suffix}", role.name());
            let token = mfi_ledger::auth::create_principal_in_process(
                &app.ledger,
                &admin,
                &id,
                vec![grant.clone()],
                36_500,
            )
            .await
            .unwrap();
            principals.push(Principal {
                grant,
                clients: Clients::new(app, Some(&token)).await,
                token,
            });
        }
    }
    principals
}

fn branch_id(id: &str) -> BranchId {
    BranchId::parse("branch_id", id).unwrap()
}

/// A call ready to send as any principal: `Ok` or the refusal.
type Reply = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;
type Call = Box<dyn FnOnce(Clients) -> Reply + Send>;

fn call<F, R>(send: F) -> Call
where
    F: FnOnce(Clients) -> R + Send + 'static,
    R: Future<Output = Result<(), Status>> + Send + 'static,
{
    Box::new(move |clients| Box::pin(send(clients)))
}

/// `service.method(request)` as a [`Call`], keeping only the status.
macro_rules! send {
    ($service:ident . $method:ident ($request:expr)) => {{
        let request = $request;
        call(move |mut clients: Clients| async move {
            clients.$service.$method(request).await.map(drop)
        })
    }};
}

/// The books the cells act on, set up by `tester` (and the first
/// administrator for the access RPCs); fresh ids for every call.
struct Setup {
    tester: Clients,
    admin: Clients,
    next: u32,
}

impl Setup {
    /// Branches TB and HN, each with center `B-C01`, group `B-G01`, member
    /// `B-0001` with compulsory (`C1`) and voluntary (`V1`, 1,000,000 VND)
    /// savings, product `P-B` (up to 10 tranches) and loan `B-0001/L1`
    /// under it (1,000,000 of 9,000,000 approved, disbursed 2024-06-24);
    /// and principal `subject`, an auditor of both branches.
    async fn set_up(app: &App) -> Setup {
        let mut setup = Setup {
            tester: Clients::new(app, Some(&app.token)).await,
            admin: Clients::new(app, Some(&admin_token(app.dir.path()))).await,
            next: 0,
        };
        for branch in [OWN, OTHER] {
            setup.open_branch(branch).await;
        }
        let roles = [OWN, OTHER]
            .map(|branch| pb::RoleGrant {
                role: Role::Auditor.name().into(),
                branch_id: branch.into(),
            })
            .to_vec();
        setup
            .admin
            .access
            .create_principal(pb::CreatePrincipalRequest {
                context: ctx("setup-subject"),
                principal_id: SUBJECT.into(),
                name: "Subject of the access RPCs".into(),
                roles,
                issue_token: false,
                token_valid_days: 0,
            })
            .await
            .unwrap();
        // A checkpoint for the proof RPCs to read.
        setup
            .tester
            .proofs
            .create_checkpoint(pb::CreateCheckpointRequest {})
            .await
            .unwrap();
        setup
    }

    async fn open_branch(&mut self, id: &str) {
        let b = &mut self.tester.branch;
        b.create_branch(pb::CreateBranchRequest {
            context: ctx(&format!("setup-{id}")),
            branch_id: id.into(),
            name: format!("Chi nhánh {id}"),
            currency: "VND".into(),
            opened_on: "2024-01-01".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        b.create_center(pb::CreateCenterRequest {
            context: ctx(&format!("setup-{id}-center")),
            center_id: format!("{id}-C01"),
            branch_id: id.into(),
            name: "Cụm 1".into(),
            opened_on: "2024-01-01".into(),
        })
        .await
        .unwrap();
        b.create_group(pb::CreateGroupRequest {
            context: ctx(&format!("setup-{id}-group")),
            group_id: format!("{id}-G01"),
            center_id: format!("{id}-C01"),
            name: "Nhóm 1".into(),
            opened_on: "2024-01-01".into(),
        })
        .await
        .unwrap();
        let member = format!("{id}-0001");
        b.register_member(pb::RegisterMemberRequest {
            context: ctx(&format!("setup-{id}-member")),
            member_id: member.clone(),
            full_name: "Lê Thị Lan".into(),
            group_id: format!("{id}-G01"),
            joined_on: "2024-01-02".into(),
        })
        .await
        .unwrap();
        for kind in [pb::SavingsKind::Compulsory, pb::SavingsKind::Voluntary] {
            b.open_savings_account(pb::OpenSavingsAccountRequest {
                context: ctx(&format!("setup-{id}-savings-{}", kind as i32)),
                member_id: member.clone(),
                kind: kind as i32,
                opened_on: "2024-01-02".into(),
            })
            .await
            .unwrap();
        }
        b.deposit_savings(pb::DepositSavingsRequest {
            context: ctx(&format!("setup-{id}-deposit")),
            account_id: format!("{member}/V1"),
            amount: vnd("1000000"),
            effective_date: "2024-06-01".into(),
        })
        .await
        .unwrap();
        let rules = pb::ProductRules {
            tranches_max: 10,
            ..product_rules(
                pb::InterestMethod::DecliningBalance,
                pb::RepaymentFrequency::Weekly,
                "52",
                4,
            )
        };
        self.tester
            .products
            .create_product(pb::CreateProductRequest {
                context: ctx(&format!("setup-{id}-product")),
                product_id: format!("P-{id}"),
                rules: Some(rules),
                effective_from: "2024-01-01".into(),
            })
            .await
            .unwrap();
        self.tester
            .branch
            .disburse_loan(pb::DisburseLoanRequest {
                context: ctx(&format!("setup-{id}-loan")),
                member_id: member,
                loan: Some(pb::disburse_loan_request::Loan::Application(
                    pb::LoanApplication {
                        approved_principal: "9000000".into(),
                        ..application(&format!("P-{id}"), "1000000", "2024-07-01")
                    },
                )),
                disbursed_on: "2024-06-24".into(),
            })
            .await
            .unwrap();
    }

    /// A new number, for ids and request ids no call used before.
    fn fresh(&mut self) -> u32 {
        self.next += 1;
        self.next
    }

    fn context(&mut self) -> Option<pb::WriteContext> {
        ctx(&format!("cell-{}", self.fresh()))
    }

    /// The journal's head, read by `tester`.
    async fn head(&mut self) -> pb::GetLedgerInfoResponse {
        self.tester
            .audit
            .get_ledger_info(pb::GetLedgerInfoRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    /// A loan of member `B-0001` disbursed today, to be written off.
    async fn fresh_loan(&mut self, branch: &str) -> String {
        let context = self.context();
        self.tester
            .branch
            .disburse_loan(pb::DisburseLoanRequest {
                context,
                member_id: format!("{branch}-0001"),
                loan: Some(pb::disburse_loan_request::Loan::Terms(flat_weekly(
                    "100000",
                    "26",
                    4,
                    "2024-07-07",
                ))),
                disbursed_on: TODAY.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .loan_id
    }

    /// The sequence of a deposit into `B-0001/V1` made today, to be reversed.
    async fn fresh_deposit(&mut self, branch: &str) -> u64 {
        let request = deposit(self.context(), branch);
        self.tester
            .branch
            .deposit_savings(request)
            .await
            .unwrap()
            .into_inner()
            .receipt
            .unwrap()
            .sequence
    }

    /// A reversal `tester` just asked for, waiting for a manager's
    /// approval: its request number.
    async fn fresh_pending(&mut self, branch: &str) -> u64 {
        let sequence = self.fresh_deposit(branch).await;
        let context = self.context();
        self.tester
            .branch
            .reverse_entry(pb::ReverseEntryRequest {
                context,
                sequence,
                reason: "entered twice".into(),
                effective_date: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pending
            .expect("a reversal waits for approval")
            .request
    }

    /// A token of `subject` just issued, to be revoked.
    async fn fresh_credential(&mut self) -> u64 {
        let context = self.context();
        self.admin
            .access
            .issue_token(pb::IssueTokenRequest {
                context,
                principal_id: SUBJECT.into(),
                valid_days: 30,
            })
            .await
            .unwrap()
            .into_inner()
            .token
            .unwrap()
            .credential_id
    }

    /// The call of `rpc` in branch `target` (`None`: an RPC in no branch),
    /// and the branch it acts in (a new branch for CreateBranch elsewhere).
    async fn prepare(&mut self, rpc: &Rpc, target: Option<&str>) -> (Option<String>, Call) {
        let b = target.unwrap_or(OWN).to_owned();
        let (member, center) = (format!("{b}-0001"), format!("{b}-C01"));
        let (voluntary, loan) = (format!("{member}/V1"), format!("{member}/L1"));
        let n = self.fresh();
        let context = self.context();
        let method = rpc.path.rsplit('/').next().unwrap();
        let place = target.map(str::to_owned);
        let call = match method {
            "CreateBranch" => {
                // In its own branch a principal can only name the existing TB.
                let id = if b == OWN { b.clone() } else { format!("X{n}") };
                let request = pb::CreateBranchRequest {
                    context,
                    branch_id: id.clone(),
                    name: format!("Chi nhánh {id}"),
                    currency: "VND".into(),
                    opened_on: "2024-01-01".into(),
                    ..Default::default()
                };
                return (Some(id), send!(branch.create_branch(request)));
            }
            "CreateCenter" => send!(branch.create_center(pb::CreateCenterRequest {
                context,
                center_id: format!("{b}-C{n}"),
                branch_id: b.clone(),
                name: "Cụm mới".into(),
                opened_on: "2024-01-01".into(),
            })),
            "CreateGroup" => send!(branch.create_group(pb::CreateGroupRequest {
                context,
                group_id: format!("{b}-G{n}"),
                center_id: center,
                name: "Nhóm mới".into(),
                opened_on: "2024-01-01".into(),
            })),
            "RegisterMember" => send!(branch.register_member(pb::RegisterMemberRequest {
                context,
                member_id: format!("{b}-M{n}"),
                full_name: "Trần Thị Mai".into(),
                group_id: format!("{b}-G01"),
                joined_on: "2024-01-02".into(),
            })),
            "OpenSavingsAccount" => {
                send!(branch.open_savings_account(pb::OpenSavingsAccountRequest {
                    context,
                    member_id: member,
                    kind: pb::SavingsKind::Voluntary as i32,
                    opened_on: TODAY.into(),
                }))
            }
            "DepositSavings" => send!(branch.deposit_savings(deposit(context, &b))),
            "WithdrawSavings" => send!(branch.withdraw_savings(pb::WithdrawSavingsRequest {
                context,
                account_id: voluntary,
                amount: vnd("1000"),
                effective_date: TODAY.into(),
            })),
            "DisburseLoan" => send!(branch.disburse_loan(pb::DisburseLoanRequest {
                context,
                member_id: member,
                loan: Some(pb::disburse_loan_request::Loan::Terms(flat_weekly(
                    "100000",
                    "26",
                    4,
                    "2024-07-07"
                ))),
                disbursed_on: TODAY.into(),
            })),
            "DisburseTranche" => send!(branch.disburse_tranche(pb::DisburseTrancheRequest {
                context,
                loan_id: loan,
                amount: vnd("1000"),
                disbursed_on: TODAY.into(),
            })),
            "RecordRepayment" => send!(branch.record_repayment(pb::RecordRepaymentRequest {
                context,
                loan_id: loan,
                amount: vnd("1000"),
                effective_date: TODAY.into(),
            })),
            "WriteOffLoan" => {
                let loan = self.fresh_loan(&b).await;
                send!(branch.write_off_loan(pb::WriteOffLoanRequest {
                    context,
                    loan_id: loan,
                    reason: "member moved away".into(),
                    effective_date: TODAY.into(),
                }))
            }
            "RecordCollectionSheet" => {
                send!(
                    branch.record_collection_sheet(pb::RecordCollectionSheetRequest {
                        context,
                        center_id: center,
                        meeting_date: TODAY.into(),
                        lines: vec![pb::CollectionLine {
                            member_id: member,
                            savings_account_id: voluntary,
                            deposit: vnd("1000"),
                            ..Default::default()
                        }],
                    })
                )
            }
            "ReverseEntry" => {
                let sequence = self.fresh_deposit(&b).await;
                send!(branch.reverse_entry(pb::ReverseEntryRequest {
                    context,
                    sequence,
                    reason: "entered twice".into(),
                    effective_date: String::new(),
                }))
            }
            "SubmitBatch" => {
                let command = pb::batch_command::Command::DepositSavings(deposit(context, &b));
                let request = pb::SubmitBatchRequest {
                    commands: vec![pb::BatchCommand {
                        command: Some(command),
                    }],
                };
                call(move |mut clients: Clients| async move {
                    let reply = clients.branch.submit_batch(request).await?.into_inner();
                    match reply.results.into_iter().next().and_then(|r| r.result) {
                        Some(pb::batch_result::Result::Error(e)) => {
                            Err(Status::new(Code::from(e.code), e.message))
                        }
                        _ => Ok(()),
                    }
                })
            }
            "Approve" => {
                let request = self.fresh_pending(&b).await;
                send!(branch.approve(pb::ApproveRequest { context, request }))
            }
            "Reject" => {
                let request = self.fresh_pending(&b).await;
                send!(branch.reject(pb::RejectRequest {
                    context,
                    request,
                    reason: "not this one".into(),
                }))
            }
            "ListPendingRequests" => {
                send!(
                    branch.list_pending_requests(pb::ListPendingRequestsRequest {
                        branch_id: b.clone(),
                        include_decided: true,
                    })
                )
            }
            "CreateProduct" => send!(products.create_product(pb::CreateProductRequest {
                context,
                product_id: format!("NEW-{n}"),
                rules: Some(weekly_rules()),
                effective_from: "2024-01-01".into(),
            })),
            "UpdateProduct" => send!(products.update_product(pb::UpdateProductRequest {
                context,
                product_id: format!("P-{b}"),
                rules: Some(weekly_rules()),
                effective_from: "2024-01-01".into(),
            })),
            "SetApprovalLimit" => {
                send!(products.set_approval_limit(pb::SetApprovalLimitRequest {
                    context,
                    product_id: format!("P-{b}"),
                    above: vnd("9000000"),
                }))
            }
            "GetProduct" => send!(products.get_product(pb::GetProductRequest {
                product_id: format!("P-{b}"),
                version: 0,
            })),
            "ListProducts" => send!(products.list_products(pb::ListProductsRequest::default())),
            "PreviewSchedule" => send!(products.preview_schedule(pb::PreviewScheduleRequest {
                product_id: format!("P-{b}"),
                principal: vnd("1000000"),
                disbursed_on: "2024-06-24".into(),
                first_repayment_date: "2024-07-01".into(),
                ..Default::default()
            })),
            "GetBalance" => send!(audit.get_balance(pb::GetBalanceRequest {
                account: format!("savings:{voluntary}"),
                as_of: None,
            })),
            "GetMember" => send!(audit.get_member(pb::GetMemberRequest {
                as_of_sequence: 0,
                member_id: member
            })),
            "GetLoan" => send!(audit.get_loan(pb::GetLoanRequest {
                as_of_sequence: 0,
                loan_id: loan,
                as_of_date: TODAY.into(),
            })),
            "GetBranchTotals" => send!(audit.get_branch_totals(pb::GetBranchTotalsRequest {
                as_of_sequence: 0,
                branch_id: b.clone(),
                period: Some(pb::get_branch_totals_request::Period::Month(
                    "2024-06".into()
                )),
            })),
            "GetPayoffQuote" => send!(audit.get_payoff_quote(pb::GetPayoffQuoteRequest {
                loan_id: loan,
                as_of_date: TODAY.into(),
            })),
            "ListLoansInArrears" => {
                send!(audit.list_loans_in_arrears(pb::ListLoansInArrearsRequest {
                    branch_id: b.clone(),
                    as_of_date: TODAY.into(),
                    ..Default::default()
                }))
            }
            "GetPortfolioQuality" => {
                send!(audit.get_portfolio_quality(pb::GetPortfolioQualityRequest {
                    branch_id: b.clone(),
                    as_of_date: TODAY.into(),
                    ..Default::default()
                }))
            }
            "ListJournalEntries" => {
                send!(audit.list_journal_entries(pb::ListJournalEntriesRequest {
                    from_sequence: 1,
                    page_size: 10,
                }))
            }
            "GetLedgerInfo" => send!(audit.get_ledger_info(pb::GetLedgerInfoRequest {})),
            "ListAccessLog" => send!(audit.list_access_log(pb::ListAccessLogRequest {
                from_sequence: 1,
                page_size: 10,
            })),
            "WhoAmI" => send!(access.who_am_i(pb::WhoAmIRequest {})),
            "CreatePrincipal" => send!(access.create_principal(pb::CreatePrincipalRequest {
                context,
                principal_id: format!("new-{n}"),
                name: format!("New principal {n}"),
                roles: vec![role_in(Role::Clerk, &b)],
                issue_token: false,
                token_valid_days: 0,
            })),
            "GrantRole" => send!(access.grant_role(pb::GrantRoleRequest {
                context,
                principal_id: SUBJECT.into(),
                role: Some(role_in(Role::Clerk, &b)),
            })),
            "RevokeRole" => send!(access.revoke_role(pb::RevokeRoleRequest {
                context,
                principal_id: SUBJECT.into(),
                role: Some(role_in(Role::Auditor, &b)),
            })),
            "IssueToken" => send!(access.issue_token(pb::IssueTokenRequest {
                context,
                principal_id: SUBJECT.into(),
                valid_days: 30,
            })),
            "RegisterCertificate" => {
                let certificate =
                    rcgen::generate_simple_self_signed(vec![format!("cell-{n}.example")]).unwrap();
                send!(access.register_certificate(pb::RegisterCertificateRequest {
                    context,
                    principal_id: SUBJECT.into(),
                    certificate_pem: certificate.cert.pem(),
                }))
            }
            "RevokeCredential" => {
                let credential_id = self.fresh_credential().await;
                send!(access.revoke_credential(pb::RevokeCredentialRequest {
                    context,
                    credential_id,
                }))
            }
            "ListPrincipals" => {
                send!(access.list_principals(pb::ListPrincipalsRequest::default()))
            }
            "GetCheckpoint" => {
                send!(proofs.get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 }))
            }
            "CreateCheckpoint" => {
                send!(proofs.create_checkpoint(pb::CreateCheckpointRequest {}))
            }
            "GetInclusionProof" => {
                send!(proofs.get_inclusion_proof(pb::GetInclusionProofRequest {
                    sequence: 1,
                    tree_size: 0,
                }))
            }
            "GetConsistencyProof" => {
                send!(
                    proofs.get_consistency_proof(pb::GetConsistencyProofRequest {
                        first_size: 1,
                        second_size: 2,
                    })
                )
            }
            "GetVerifierKey" => send!(proofs.get_verifier_key(pb::GetVerifierKeyRequest {})),
            "AddCosignature" => {
                // The witness cosigns the latest checkpoint, read by tester.
                let mut proofs = self.tester.proofs.clone();
                let note = proofs
                    .get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 })
                    .await
                    .unwrap()
                    .into_inner()
                    .checkpoint
                    .unwrap()
                    .note;
                let witness =
                    Signer::generate(&format!("witness-{n}"), KeyKind::Cosignature).unwrap();
                let mut cosigned = Note::parse(&note).unwrap();
                let line = witness.cosignature_line(&cosigned.text, 1_700_000_000);
                cosigned.add_signature_line(&line).unwrap();
                send!(proofs.add_cosignature(pb::AddCosignatureRequest {
                    note: cosigned.to_text(),
                    witness_key: witness.verifier().to_text(),
                }))
            }
            "ListAccounts" => send!(books.list_accounts(pb::ListAccountsRequest {
                branch_id: b.clone(),
                ..Default::default()
            })),
            "GetTrialBalance" => send!(books.get_trial_balance(pb::GetTrialBalanceRequest {
                branch_id: b.clone(),
                as_of: None,
            })),
            "GetBalanceSheet" => send!(books.get_balance_sheet(pb::GetBalanceSheetRequest {
                branch_id: b.clone(),
                date: TODAY.into(),
                ..Default::default()
            })),
            "GetIncomeStatement" => {
                send!(books.get_income_statement(pb::GetIncomeStatementRequest {
                    branch_id: b.clone(),
                    to: TODAY.into(),
                    ..Default::default()
                }))
            }
            "GetAccountStatement" => {
                send!(books.get_account_statement(pb::GetAccountStatementRequest {
                    account: format!("savings:{voluntary}"),
                    to: TODAY.into(),
                    ..Default::default()
                }))
            }
            "PostSavingsInterest" => {
                send!(
                    branch.post_savings_interest(pb::PostSavingsInterestRequest {
                        context,
                        branch_id: b.clone(),
                        period_end: "2024-05-31".into(),
                    })
                )
            }
            "DefineSavingsProduct" => {
                send!(
                    products.define_savings_product(pb::DefineSavingsProductRequest {
                        context,
                        product_id: format!("S-{n}"),
                        name: format!("Savings {n}"),
                        kind: pb::SavingsKind::Voluntary as i32,
                        interest: Some(pb::SavingsInterestRules {
                            annual_rate_percent: "5".into(),
                            posting: pb::PostingFrequency::Monthly as i32,
                            ..Default::default()
                        }),
                        effective_from: "2024-01-01".into(),
                    })
                )
            }
            "ListSavingsProducts" => {
                send!(products.list_savings_products(pb::ListSavingsProductsRequest {}))
            }
            "ExportBooks" => {
                // A stream: the call is the whole export, read to its end.
                let request = pb::ExportBooksRequest {
                    kind: pb::ExportKind::Postings as i32,
                    format: pb::ExportFormat::Csv as i32,
                    branch_id: b.clone(),
                    ..Default::default()
                };
                call(move |mut clients: Clients| async move {
                    let mut stream = clients.books.export_books(request).await?.into_inner();
                    while stream.message().await?.is_some() {}
                    Ok(())
                })
            }
            "Backup" => {
                // A stream: the call is the whole backup, read to its end.
                call(move |mut clients: Clients| async move {
                    let mut stream = clients
                        .operations
                        .backup(pb::BackupRequest {})
                        .await?
                        .into_inner();
                    while stream.message().await?.is_some() {}
                    Ok(())
                })
            }
            "ClosePeriod" => send!(branch.close_period(pb::ClosePeriodRequest {
                context,
                branch_id: b.clone(),
                through: format!("2024-01-{:02}", 1 + n % 28),
            })),
            "ReopenPeriod" => send!(branch.reopen_period(pb::ReopenPeriodRequest {
                context,
                branch_id: b.clone(),
                from: "2024-01-01".into(),
                reason: "a deposit was left out".into(),
            })),
            "FundBranch" => send!(branch.fund_branch(pb::FundBranchRequest {
                context,
                branch_id: b.clone(),
                source: pb::FundingSource::HeadOffice as i32,
                amount: vnd("1000000"),
                effective_date: TODAY.into(),
            })),
            "ReturnBranchFunding" => {
                send!(
                    branch.return_branch_funding(pb::ReturnBranchFundingRequest {
                        context,
                        branch_id: b.clone(),
                        source: pb::FundingSource::HeadOffice as i32,
                        amount: vnd("1"),
                        effective_date: TODAY.into(),
                    })
                )
            }
            other => panic!("no case for {other}: add one to tests/ledger/access_table.rs"),
        };
        (place, call)
    }
}

/// A deposit of 1,000 VND into `B-0001/V1` today.
fn deposit(context: Option<pb::WriteContext>, branch: &str) -> pb::DepositSavingsRequest {
    pb::DepositSavingsRequest {
        context,
        account_id: format!("{branch}-0001/V1"),
        amount: vnd("1000"),
        effective_date: TODAY.into(),
    }
}

fn weekly_rules() -> pb::ProductRules {
    product_rules(
        pb::InterestMethod::Flat,
        pb::RepaymentFrequency::Weekly,
        "26",
        4,
    )
}

fn role_in(role: Role, branch: &str) -> pb::RoleGrant {
    pb::RoleGrant {
        role: role.name().into(),
        branch_id: branch.into(),
    }
}

/// True for the actions that write the journal (every action named, so a
/// new one is sorted here).
fn writes(action: Action) -> bool {
    match action {
        Action::Write
        | Action::Correct
        | Action::Close
        | Action::Fund
        | Action::Approve
        | Action::Organize
        | Action::Catalogue
        | Action::Administer => true,
        Action::ReadBranch
        | Action::ReadCatalogue
        | Action::ReadJournal
        | Action::ReadAccess
        | Action::Identify => false,
    }
}

/// Characters of a refusal's message shown in a row of the failure.
const MESSAGE_SHOWN_MAX: usize = 100;

/// One call and what came of it.
struct Cell {
    rpc: &'static str,
    principal: String,
    place: String,
    allowed: bool,
    got: Code,
    message: String,
    journal_changed: bool,
}

impl Cell {
    /// Why the cell contradicts the table, if it does.
    fn mismatch(&self, action: Action) -> Option<&'static str> {
        let for_access = matches!(self.got, Code::PermissionDenied | Code::Unauthenticated);
        if self.principal == "no credential" {
            return match (self.got, self.journal_changed) {
                (Code::Unauthenticated, false) => None,
                (Code::Unauthenticated, true) => Some("refused but the journal changed"),
                _ => Some("expected UNAUTHENTICATED"),
            };
        }
        if self.allowed && for_access {
            Some("allowed by the table but refused for access")
        } else if !self.allowed && self.got != Code::PermissionDenied {
            Some("denied by the table but not PERMISSION_DENIED")
        } else if self.journal_changed && (!self.allowed || !writes(action)) {
            Some("the journal changed")
        } else {
            None
        }
    }

    fn row(&self, why: &str) -> String {
        let expected = if self.allowed { "allow" } else { "deny" };
        format!(
            "{:<36} {:<28} {:<4} expected {:<5} got {:?}{} ({why}): {}",
            self.rpc,
            self.principal,
            self.place,
            expected,
            self.got,
            if self.journal_changed {
                ", journal changed"
            } else {
                ""
            },
            self.message
                .chars()
                .take(MESSAGE_SHOWN_MAX)
                .collect::<String>()
        )
    }
}

/// Sends `call` as `clients`, with the journal's head around it.
async fn run(setup: &mut Setup, call: Call, clients: Clients) -> (Code, String, bool) {
    let before = setup.head().await;
    let outcome = call(clients).await;
    let after = setup.head().await;
    let (got, message) = match outcome {
        Ok(()) => (Code::Ok, String::new()),
        Err(status) => (status.code(), status.message().to_owned()),
    };
    (got, message, before != after)
}

#[tokio::test]
async fn every_cell_of_the_role_by_rpc_table_is_what_the_server_does() {
    let app = spawn_app().await;
    let mut setup = Setup::set_up(&app).await;
    let principals = principals(&app).await;
    let anonymous = Clients::new(&app, None).await;
    let mut cells: Vec<(Action, Cell)> = Vec::new();
    for rpc in RPCS {
        let method = rpc.path.trim_start_matches("/mfi.ledger.v1.");
        let targets = match rpc.action.reach() {
            Reach::Branch => vec![Some(OWN), Some(OTHER)],
            Reach::Institution | Reach::Anywhere => vec![None],
        };
        for principal in &principals {
            for target in &targets {
                let (place, call) = setup.prepare(rpc, *target).await;
                let branch = place.as_deref().map(branch_id);
                let allowed = principal.may(rpc.action, branch.as_ref());
                let (got, message, journal_changed) =
                    run(&mut setup, call, principal.clients.clone()).await;
                let cell = Cell {
                    rpc: method,
                    principal: principal.label(),
                    place: place.unwrap_or_else(|| "-".into()),
                    allowed,
                    got,
                    message,
                    journal_changed,
                };
                cells.push((rpc.action, cell));
            }
        }
        // Without a credential. The tester's reads around it (which
        // authenticate) keep the failures from this address from being
        // answered ever later.
        let (place, call) = setup.prepare(rpc, targets[0]).await;
        let (got, message, journal_changed) = run(&mut setup, call, anonymous.clone()).await;
        let cell = Cell {
            rpc: method,
            principal: "no credential".into(),
            place: place.unwrap_or_else(|| "-".into()),
            allowed: false,
            got,
            message,
            journal_changed,
        };
        cells.push((rpc.action, cell));
    }

    let count = |test: &dyn Fn(&Cell) -> bool| cells.iter().filter(|(_, c)| test(c)).count();
    let anonymous_cells = count(&|c| c.principal == "no credential");
    let allowed = count(&|c| c.allowed);
    let succeeded = count(&|c| c.allowed && c.got == Code::Ok);
    println!(
        "{} cells: {allowed} allowed ({succeeded} OK), {} denied, {anonymous_cells} without a credential",
        cells.len(),
        cells.len() - allowed - anonymous_cells,
    );
    for (_, cell) in cells.iter().filter(|(_, c)| c.allowed && c.got != Code::Ok) {
        println!("allowed, refused for business reasons: {}", cell.row("ok"));
    }
    let mismatches: Vec<String> = cells
        .iter()
        .filter_map(|(action, cell)| cell.mismatch(*action).map(|why| cell.row(why)))
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} cells contradict the role x RPC table:\n{}",
        mismatches.len(),
        cells.len(),
        mismatches.join("\n")
    );
}

/// The RPCs that write: a journal entry (the actions [`writes`] names,
/// but for `Backup`, which reads), a signed checkpoint or a kept
/// cosignature.
fn rpc_writes(rpc: &Rpc) -> bool {
    let method = rpc.path.rsplit('/').next().unwrap_or_default();
    match method {
        "Backup" => false,
        "CreateCheckpoint" | "AddCosignature" => true,
        _ => writes(rpc.action),
    }
}

/// Every file of `dir` (not the temporary files of a test) and its bytes.
fn files_of(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// `serve --read-only` on a stopped server's directory: every RPC, called
/// as a principal who may call it, answers as on the server of record when
/// it reads, and is refused with FAILED_PRECONDITION when it writes; not a
/// byte of the directory changes.
#[tokio::test]
async fn a_read_only_copy_answers_every_read_and_refuses_every_write() {
    let app = spawn_app().await;
    let mut setup = Setup::set_up(&app).await;
    let principals = principals(&app).await;
    // One call per RPC, prepared on the server of record, each with a
    // principal of the institution who may make it.
    let mut calls = Vec::new();
    for rpc in RPCS {
        let target = match rpc.action.reach() {
            Reach::Branch => Some(OWN),
            Reach::Institution | Reach::Anywhere => None,
        };
        let (place, call) = setup.prepare(rpc, target).await;
        let branch = place.as_deref().map(branch_id);
        let token = principals
            .iter()
            .filter(|p| p.grant.scope == Scope::Institution)
            .find(|p| p.may(rpc.action, branch.as_ref()))
            .map(|p| p.token.clone())
            .unwrap_or_else(|| admin_token(app.dir.path()));
        calls.push((rpc, token, call));
    }
    drop(setup);
    drop(principals);
    let dir = app.stop().await;
    // An auditor's copy: the log's verifier key, not its private key.
    std::fs::remove_file(dir.path().join(mfi_ledger::checkpoint::keys::LOG_KEY_FILE)).unwrap();
    let before = files_of(dir.path());
    let copy = crate::support::start_read_only(dir).await;
    let mut wrong = Vec::new();
    for (rpc, token, call) in calls {
        let outcome = call(Clients::new(&copy, Some(&token)).await).await;
        let ok = match (&outcome, rpc_writes(rpc)) {
            (Ok(()), false) => true,
            (Err(status), true) => {
                status.code() == Code::FailedPrecondition && status.message().contains("read-only")
            }
            _ => false,
        };
        if !ok {
            wrong.push(format!("{}: {:?}", rpc.path, outcome.err()));
        }
    }
    assert!(
        wrong.is_empty(),
        "on the read-only copy:\n{}",
        wrong.join("\n")
    );
    assert!(RPCS.iter().filter(|rpc| rpc_writes(rpc)).count() >= 30);
    // The access log served is the copy's: the reads made on the server
    // of record (those of the copy are not added to it).
    let administrator = Clients::new(&copy, Some(&admin_token(copy.dir.path()))).await;
    let log = administrator
        .audit
        .clone()
        .list_access_log(pb::ListAccessLogRequest {
            from_sequence: 1,
            page_size: 1000,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!log.records.is_empty(), "the copy's access log is served");
    let dir = copy.stop().await;
    assert!(
        before == files_of(dir.path()),
        "the read-only server changed its directory"
    );
}
