//! Test support: a real server on 127.0.0.1, port 0, with a temporary store,
//! and small builders so each test reads like what a clerk does.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use mfi_ledger::api::{self, ServerLimits};
use mfi_ledger::ledger::{Clock, Ledger, LedgerConfig};
use mfi_ledger::pb;
use mfi_ledger::pb::audit_service_client::AuditServiceClient;
use mfi_ledger::pb::branch_service_client::BranchServiceClient;
use mfi_ledger::store::DiskStore;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// A clock the test sets. Starts at 2024-06-30 10:00 in Hà Nội.
pub struct TestClock(AtomicI64);

impl TestClock {
    pub fn new() -> Arc<TestClock> {
        let start = Utc.with_ymd_and_hms(2024, 6, 30, 3, 0, 0).unwrap();
        Arc::new(TestClock(AtomicI64::new(start.timestamp_micros())))
    }

    #[allow(dead_code)]
    pub fn set(&self, at: DateTime<Utc>) {
        self.0.store(at.timestamp_micros(), Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0.load(Ordering::SeqCst)).unwrap()
    }
}

/// "Today" for the test clock, in the branch's zone.
pub const TODAY: &str = "2024-06-30";

/// A running server and clients connected to it.
pub struct App {
    pub branch: BranchServiceClient<Conn>,
    pub audit: AuditServiceClient<Conn>,
    /// The token of `tester`: manager, product admin and auditor of the
    /// whole institution (what the clients above send).
    pub token: String,
    /// The ledger's clock, when `spawn_app` made it (tests move it).
    pub clock: Option<Arc<TestClock>>,
    pub ledger: Arc<Ledger>,
    pub dir: TempDir,
    pub address: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

pub async fn spawn_app() -> App {
    spawn_app_with(LedgerConfig::default(), ServerLimits::default()).await
}

pub async fn spawn_app_with(config: LedgerConfig, limits: ServerLimits) -> App {
    let dir = tempfile::tempdir().unwrap();
    start_in(dir, config, limits).await
}

/// The origin of the test ledgers' checkpoints.
pub const LOG_ORIGIN: &str = "mfi-ledger.test/ledger";

async fn start_in(dir: TempDir, config: LedgerConfig, limits: ServerLimits) -> App {
    if crate::ON_POSTGRES {
        let store = postgres::open(dir.path()).await;
        return start_on(store, dir, config, limits).await;
    }
    let store = open_disk_store(dir.path());
    start_on(Arc::new(store), dir, config, limits).await
}

/// The embedded store of data directory `dir`, opened again after a
/// ledger on it stopped: the stopped store's last threads let go of the
/// journal's lock, and sled of the state cache's, a moment after the
/// ledger is dropped (longer on a loaded machine), so an open refused for
/// either lock is tried again, for up to 5 s.
pub fn open_disk_store(dir: &std::path::Path) -> DiskStore {
    let mut store = DiskStore::open(dir);
    for _ in 0..250 {
        match &store {
            Err(error)
                if error.to_string().contains("could not acquire lock")
                    || error.to_string().contains("is another mfi-ledger using") => {}
            _ => break,
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        store = DiskStore::open(dir);
    }
    store.unwrap()
}

/// The state cache of data directory `dir` opened with sled directly, to
/// edit it as a tamperer or a damaged disk would: a server stopped just
/// before may still hold its lock for a moment (sled releases it from a
/// background thread), so the open is tried again for up to 5 s.
#[allow(dead_code)]
pub fn open_cache_directly(dir: &std::path::Path) -> sled::Db {
    let open = || {
        sled::Config::new()
            .path(dir.join("state"))
            .segment_size(mfi_ledger::store::CACHE_SEGMENT_BYTES)
            .open()
    };
    let mut db = open();
    for _ in 0..250 {
        if db.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        db = open();
    }
    db.unwrap()
}

/// Starts the ledger and the server on `store`, whose derived files (and
/// the log key) are in `dir`.
pub async fn start_on(
    store: Arc<dyn mfi_ledger::store::Store>,
    dir: TempDir,
    mut config: LedgerConfig,
    limits: ServerLimits,
) -> App {
    if config.log_checkpoints.signer.is_none() {
        let signer =
            mfi_ledger::checkpoint::keys::log_signer(dir.path(), Some(LOG_ORIGIN)).unwrap();
        config.log_checkpoints.signer = Some(Arc::new(signer));
    }
    let clock = TestClock::new();
    let ledger = Arc::new(Ledger::start(store, clock.clone(), config).unwrap());
    let mut app = serve_ledger(ledger, dir, limits).await;
    app.clock = Some(clock);
    app
}

/// Serves a data directory `App::stop` gave back read-only, as `serve
/// --read-only` does: nothing in it is written.
#[allow(dead_code)]
pub async fn start_read_only(dir: TempDir) -> App {
    let store = mfi_ledger::store::ReadOnlyStore::open(dir.path()).unwrap();
    let mut config = LedgerConfig {
        read_only: true,
        ..LedgerConfig::default()
    };
    config.log_checkpoints.verifier =
        mfi_ledger::checkpoint::keys::log_verifier(dir.path()).unwrap();
    let ledger = Arc::new(Ledger::start(Arc::new(store), TestClock::new(), config).unwrap());
    serve_ledger(ledger, dir, ServerLimits::default()).await
}

/// Starts the server and the ledger again on a data directory `App::stop`
/// gave back (changed in between, say).
pub async fn start_again(dir: TempDir) -> App {
    start_in(dir, LedgerConfig::default(), ServerLimits::default()).await
}

impl App {
    /// Stops the server and the ledger, and starts them again on the same data.
    pub async fn restart(self) -> App {
        self.restart_with(LedgerConfig::default()).await
    }

    /// [`App::restart`] with `config`.
    pub async fn restart_with(self, config: LedgerConfig) -> App {
        let dir = self.stop().await;
        start_in(dir, config, ServerLimits::default()).await
    }

    /// Stops the server and the ledger cleanly; gives back the data directory.
    pub async fn stop(mut self) -> TempDir {
        // Disconnect the clients so that the server's connections end.
        let nowhere = with_token(
            Channel::from_static("http://127.0.0.1:9").connect_lazy(),
            &self.token,
        );
        self.branch = BranchServiceClient::new(nowhere.clone());
        self.audit = AuditServiceClient::new(nowhere);
        self.stop_server().await;
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || ledger.shutdown())
            .await
            .unwrap();
        // Wait until nothing else holds the ledger, so its store closes.
        for _ in 0..500 {
            if Arc::strong_count(&self.ledger) == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let placeholder = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, placeholder)
    }

    async fn stop_server(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }

    /// The journal's last sequence number.
    pub async fn last_sequence(&mut self) -> u64 {
        self.audit
            .get_ledger_info(pb::GetLedgerInfoRequest {})
            .await
            .unwrap()
            .into_inner()
            .last_sequence
    }

    /// An account's balance on its normal side, as the API prints it.
    pub async fn balance(&mut self, account: &str) -> String {
        let request = pb::GetBalanceRequest {
            account: account.into(),
            as_of: None,
        };
        self.audit
            .get_balance(request)
            .await
            .unwrap()
            .into_inner()
            .balance
            .unwrap()
            .amount
    }

    /// Creates branch TB with one center and group (opened 2024-01-01).
    pub async fn branch_tb(&mut self) {
        self.branch
            .create_branch(pb::CreateBranchRequest {
                context: ctx("setup-branch"),
                branch_id: "TB".into(),
                name: "TYM - Chi nhánh Thái Bình".into(),
                opened_on: "2024-01-01".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        self.branch
            .create_center(pb::CreateCenterRequest {
                context: ctx("setup-center"),
                center_id: "TB-C01".into(),
                branch_id: "TB".into(),
                name: "Cụm Vũ Thư 1".into(),
                opened_on: "2024-01-01".into(),
            })
            .await
            .unwrap();
        self.branch
            .create_group(pb::CreateGroupRequest {
                context: ctx("setup-group"),
                group_id: "TB-G01".into(),
                center_id: "TB-C01".into(),
                name: "Nhóm 1".into(),
                opened_on: "2024-01-01".into(),
            })
            .await
            .unwrap();
    }

    /// Registers a member in group TB-G01 with a compulsory savings account
    /// (`MEMBER/C1`), joined 2024-01-02.
    pub async fn member(&mut self, member_id: &str) -> String {
        self.branch
            .register_member(pb::RegisterMemberRequest {
                context: ctx(&format!("register-{member_id}")),
                member_id: member_id.into(),
                full_name: "Nguyễn Thị Hoa".into(),
                group_id: "TB-G01".into(),
                joined_on: "2024-01-02".into(),
            })
            .await
            .unwrap();
        self.branch
            .open_savings_account(pb::OpenSavingsAccountRequest {
                context: ctx(&format!("open-{member_id}")),
                member_id: member_id.into(),
                kind: pb::SavingsKind::Compulsory as i32,
                opened_on: "2024-01-02".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .account_id
    }

    /// Deposits `amount` VND into `account` on `date`.
    pub async fn deposit(
        &mut self,
        request_id: &str,
        account: &str,
        amount: &str,
        date: &str,
    ) -> Result<pb::DepositSavingsResponse, tonic::Status> {
        self.branch
            .deposit_savings(pb::DepositSavingsRequest {
                context: ctx(request_id),
                account_id: account.into(),
                amount: vnd(amount),
                effective_date: date.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Submits `commands` as one batch; panics if the batch is refused
    /// whole. Each command's result, in order.
    pub async fn submit_batch(&mut self, commands: Vec<pb::BatchCommand>) -> Vec<pb::BatchResult> {
        self.branch
            .submit_batch(pb::SubmitBatchRequest { commands })
            .await
            .unwrap()
            .into_inner()
            .results
    }

    /// Deposits `count` times 1,000 VND into `TB-0001/C1` on `date`, a
    /// thousand a batch; panics unless every one is accepted.
    pub async fn deposits(&mut self, count: usize, date: &str) {
        self.deposits_as("deposit", count, date).await
    }

    /// [`App::deposits`] with request ids `PREFIX-0`, `PREFIX-1`...: more
    /// deposits after some already made under other ids.
    pub async fn deposits_as(&mut self, prefix: &str, count: usize, date: &str) {
        for batch in 0..count.div_ceil(1000) {
            let commands = (batch * 1000..((batch + 1) * 1000).min(count))
                .map(|i| pb::BatchCommand {
                    command: Some(pb::batch_command::Command::DepositSavings(
                        pb::DepositSavingsRequest {
                            context: ctx(&format!("{prefix}-{i}")),
                            account_id: "TB-0001/C1".into(),
                            amount: vnd("1000"),
                            effective_date: date.into(),
                        },
                    )),
                })
                .collect();
            let results = self.submit_batch(commands).await;
            assert!(
                results
                    .iter()
                    .all(|r| matches!(r.result, Some(pb::batch_result::Result::DepositSavings(_))))
            );
        }
    }

    /// Disburses a flat weekly loan; returns its id.
    pub async fn disburse(
        &mut self,
        request_id: &str,
        member: &str,
        terms: pb::LoanTerms,
        date: &str,
    ) -> Result<pb::DisburseLoanResponse, tonic::Status> {
        self.branch
            .disburse_loan(pb::DisburseLoanRequest {
                context: ctx(request_id),
                member_id: member.into(),
                loan: Some(pb::disburse_loan_request::Loan::Terms(terms)),
                disbursed_on: date.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Records a repayment.
    pub async fn repay(
        &mut self,
        request_id: &str,
        loan: &str,
        amount: &str,
        date: &str,
    ) -> Result<pb::RecordRepaymentResponse, tonic::Status> {
        self.branch
            .record_repayment(pb::RecordRepaymentRequest {
                context: ctx(request_id),
                loan_id: loan.into(),
                amount: vnd(amount),
                effective_date: date.into(),
            })
            .await
            .map(|r| r.into_inner())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A write context with actor "clerk".
pub fn ctx(request_id: &str) -> Option<pb::WriteContext> {
    Some(pb::WriteContext {
        request_id: request_id.into(),
        actor: "clerk".into(),
    })
}

/// An amount in VND.
pub fn vnd(amount: &str) -> Option<pb::Money> {
    Some(pb::Money {
        amount: amount.into(),
        currency: "VND".into(),
    })
}

/// Flat, weekly, whole-đồng terms.
pub fn flat_weekly(principal: &str, rate: &str, installments: u32, first: &str) -> pb::LoanTerms {
    pb::LoanTerms {
        principal: vnd(principal),
        annual_interest_rate_percent: rate.into(),
        interest_method: pb::InterestMethod::Flat as i32,
        installment_count: installments,
        repayment_frequency: pb::RepaymentFrequency::Weekly as i32,
        first_repayment_date: first.into(),
        rounding_multiple: String::new(),
    }
}

/// Parses a date.
#[allow(dead_code)]
pub fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// Asserts a refusal's code and that its message names `field`.
pub fn assert_refused(status: &tonic::Status, code: tonic::Code, field: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(field),
        "message {:?} should name {field:?}",
        status.message()
    );
}

/// The whole journal, read page by page (`page_size` entries a page), with
/// the check that no page is longer than asked.
pub async fn read_journal(
    audit: &mut AuditServiceClient<Conn>,
    page_size: u32,
) -> Vec<pb::JournalEntry> {
    let mut entries = Vec::new();
    let mut from = 1;
    while from != 0 {
        let request = pb::ListJournalEntriesRequest {
            from_sequence: from,
            page_size,
        };
        let page = audit
            .list_journal_entries(request)
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= page_size as usize);
        entries.extend(page.entries);
        from = page.next_sequence;
    }
    entries
}

/// Member TB-0001 with 200,000 VND saved and a 1,000,000 VND flat loan at
/// 26% a year over 4 weekly installments from 2024-01-15.
///
/// Worked by hand: period rate 26% / 52 = 0.5%; interest per installment
/// 1,000,000 x 0.5% = 5,000; principal 1,000,000 / 4 = 250,000; total 255,000.
pub async fn borrower() -> (App, String) {
    let mut app = spawn_app().await;
    app.branch_tb().await;
    let account = app.member("TB-0001").await;
    app.deposit("dep-1", &account, "200000", "2024-01-05")
        .await
        .unwrap();
    let loan = app
        .disburse(
            "loan-1",
            "TB-0001",
            flat_weekly("1000000", "26", 4, "2024-01-15"),
            "2024-01-08",
        )
        .await
        .unwrap();
    (app, loan.loan_id)
}

/// A client of the product catalogue on `app`'s server.
#[allow(dead_code)]
pub async fn products(
    app: &App,
) -> mfi_ledger::pb::product_service_client::ProductServiceClient<Conn> {
    mfi_ledger::pb::product_service_client::ProductServiceClient::new(
        connect(app.address, &app.token).await,
    )
}

/// The journal's head and some balances: what a refusal must leave alone.
#[derive(Debug, PartialEq)]
pub struct Books {
    pub head: pb::GetLedgerInfoResponse,
    pub balances: Vec<(String, String)>,
}

/// The journal's head and the balances of `accounts`.
#[allow(dead_code)]
pub async fn books(app: &mut App, accounts: &[&str]) -> Books {
    let head = app
        .audit
        .get_ledger_info(pb::GetLedgerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut balances = Vec::new();
    for account in accounts {
        balances.push((account.to_string(), app.balance(account).await));
    }
    Books { head, balances }
}

/// Product rules with the given method and frequency and a single rate;
/// 1 to 10,000,000 VND, `installments` installments (the only count allowed),
/// whole-đồng half-even rounding, no fees, one tranche, no tolerance.
#[allow(dead_code)]
pub fn product_rules(
    method: pb::InterestMethod,
    frequency: pb::RepaymentFrequency,
    rate: &str,
    installments: u32,
) -> pb::ProductRules {
    pb::ProductRules {
        name: "Vốn sản xuất".into(),
        currency: "VND".into(),
        principal_min: "1".into(),
        principal_max: "10000000".into(),
        rate_min_percent: rate.into(),
        rate_max_percent: rate.into(),
        interest_method: method as i32,
        repayment_frequency: frequency as i32,
        installments_min: installments,
        ..Default::default()
    }
}

/// Defines product `id` (version 1) with `rules`.
#[allow(dead_code)]
pub async fn create_product(app: &App, id: &str, rules: pb::ProductRules) {
    products(app)
        .await
        .create_product(pb::CreateProductRequest {
            context: ctx(&format!("product-{id}")),
            product_id: id.into(),
            rules: Some(rules),
            effective_from: "2024-01-01".into(),
        })
        .await
        .unwrap();
}

/// An application under `product` for `principal` VND, first due on `first`,
/// with the product's rate and installment count.
#[allow(dead_code)]
pub fn application(product: &str, principal: &str, first: &str) -> pb::LoanApplication {
    pb::LoanApplication {
        product_id: product.into(),
        principal: vnd(principal),
        first_repayment_date: first.into(),
        ..Default::default()
    }
}

impl App {
    /// Branch `id` keeping its books in `currency`, with center `ID-C01`,
    /// group `ID-G01` and member `ID-0001` holding compulsory savings
    /// `ID-0001/C1` (opened 2024-01-01, joined 2024-01-02).
    #[allow(dead_code)]
    pub async fn other_branch(&mut self, id: &str, currency: &str) {
        let (center, group, member) = (
            format!("{id}-C01"),
            format!("{id}-G01"),
            format!("{id}-0001"),
        );
        self.branch
            .create_branch(pb::CreateBranchRequest {
                context: ctx(&format!("branch-{id}")),
                branch_id: id.into(),
                name: format!("Chi nhánh {id}"),
                currency: currency.into(),
                opened_on: "2024-01-01".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        self.branch
            .create_center(pb::CreateCenterRequest {
                context: ctx(&format!("center-{id}")),
                center_id: center.clone(),
                branch_id: id.into(),
                name: "Cụm 1".into(),
                opened_on: "2024-01-01".into(),
            })
            .await
            .unwrap();
        self.branch
            .create_group(pb::CreateGroupRequest {
                context: ctx(&format!("group-{id}")),
                group_id: group.clone(),
                center_id: center,
                name: "Nhóm 1".into(),
                opened_on: "2024-01-01".into(),
            })
            .await
            .unwrap();
        self.branch
            .register_member(pb::RegisterMemberRequest {
                context: ctx(&format!("member-{id}")),
                member_id: member.clone(),
                full_name: "Lê Thị Lan".into(),
                group_id: group,
                joined_on: "2024-01-02".into(),
            })
            .await
            .unwrap();
        self.branch
            .open_savings_account(pb::OpenSavingsAccountRequest {
                context: ctx(&format!("savings-{id}")),
                member_id: member,
                kind: pb::SavingsKind::Compulsory as i32,
                opened_on: "2024-01-02".into(),
            })
            .await
            .unwrap();
    }

    /// Disburses a loan applied for under a product.
    #[allow(dead_code)]
    pub async fn disburse_under(
        &mut self,
        request_id: &str,
        member: &str,
        application: pb::LoanApplication,
        date: &str,
    ) -> Result<pb::DisburseLoanResponse, tonic::Status> {
        self.branch
            .disburse_loan(pb::DisburseLoanRequest {
                context: ctx(request_id),
                member_id: member.into(),
                loan: Some(pb::disburse_loan_request::Loan::Application(application)),
                disbursed_on: date.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Pays `loan` off on `date` with the amount its payoff quote gives
    /// then; the payment's entry, which closed it.
    #[allow(dead_code)]
    pub async fn pay_off(&mut self, loan: &str, date: &str) -> u64 {
        let quote = self
            .audit
            .get_payoff_quote(pb::GetPayoffQuoteRequest {
                loan_id: loan.into(),
                as_of_date: date.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let paid = self
            .repay(
                &format!("payoff-{}-{date}", loan.replace('/', "-")),
                loan,
                amount(&quote.total),
                date,
            )
            .await
            .unwrap();
        assert!(paid.loan_closed, "{paid:?}");
        paid.receipt.unwrap().sequence
    }

    /// A loan as of `date`.
    #[allow(dead_code)]
    pub async fn loan(&mut self, loan: &str, date: &str) -> pb::GetLoanResponse {
        self.audit
            .get_loan(pb::GetLoanRequest {
                as_of_sequence: 0,
                loan_id: loan.into(),
                as_of_date: date.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Reverses entry `sequence`.
    #[allow(dead_code)]
    pub async fn reverse(
        &mut self,
        request_id: &str,
        sequence: u64,
    ) -> Result<pb::ReverseEntryResponse, tonic::Status> {
        self.reverse_approved(pb::ReverseEntryRequest {
            context: ctx(request_id),
            sequence,
            reason: "entered by mistake".into(),
            effective_date: String::new(),
        })
        .await
    }

    /// The token of `checker`, a manager of the whole institution who
    /// approves what `tester` asks (created on first use, so that tests
    /// without approvals keep their sequence numbers).
    pub async fn checker_token(&mut self) -> String {
        use mfi_ledger::domain::access::{Role, RoleGrant, Scope};
        let file = self.dir.path().join("checker.token");
        if file.exists() {
            return mfi_ledger::auth::read_secret(&file).unwrap();
        }
        let admin = mfi_ledger::domain::ids::PrincipalId::parse("p", "admin").unwrap();
        let grants = vec![RoleGrant {
            role: Role::Manager,
            scope: Scope::Institution,
        }];
        let token = mfi_ledger::auth::create_principal_in_process(
            &self.ledger,
            &admin,
            CHECKER,
            grants,
            36_500,
        )
        .await
        .unwrap();
        mfi_ledger::auth::write_secret(&file, &token).unwrap();
        token
    }

    /// Approves pending request `request` as `checker`: the command's reply.
    pub async fn approve(
        &mut self,
        request: u64,
    ) -> Result<pb::batch_result::Result, tonic::Status> {
        let token = self.checker_token().await;
        let mut checker = BranchServiceClient::new(connect(self.address, &token).await);
        let approved = checker
            .approve(pb::ApproveRequest {
                context: ctx(&format!("approve-{request}")),
                request,
            })
            .await?
            .into_inner();
        Ok(approved.result.unwrap().result.unwrap())
    }

    /// Asks for a reversal (which waits for approval) and has `checker`
    /// approve it: the reversal's reply, or the refusal of either step.
    pub async fn reverse_approved(
        &mut self,
        request: pb::ReverseEntryRequest,
    ) -> Result<pb::ReverseEntryResponse, tonic::Status> {
        let asked = self.branch.reverse_entry(request).await?.into_inner();
        let pending = asked.pending.expect("a reversal waits for approval");
        match self.approve(pending.request).await? {
            pb::batch_result::Result::ReverseEntry(reply) => Ok(reply),
            other => panic!("approving a reversal gave {other:?}"),
        }
    }

    /// Asks for a write-off (which waits for approval) and has `checker`
    /// approve it: the write-off's reply, or the refusal of either step.
    pub async fn write_off_approved(
        &mut self,
        request: pb::WriteOffLoanRequest,
    ) -> Result<pb::WriteOffLoanResponse, tonic::Status> {
        let asked = self.branch.write_off_loan(request).await?.into_inner();
        let pending = asked.pending.expect("a write-off waits for approval");
        match self.approve(pending.request).await? {
            pb::batch_result::Result::WriteOffLoan(reply) => Ok(reply),
            other => panic!("approving a write-off gave {other:?}"),
        }
    }
}

/// An amount as the API prints it.
#[allow(dead_code)]
pub fn amount(money: &Option<pb::Money>) -> &str {
    &money.as_ref().expect("an amount").amount
}

/// Every loan in arrears in `branch` ("" for all) on `as_of`, read page by
/// page, most days in arrears first (then by loan id), as the CLI shows them.
#[allow(dead_code)]
pub async fn loans_in_arrears(app: &mut App, branch: &str, as_of: &str) -> Vec<pb::LoanArrears> {
    let mut request = pb::ListLoansInArrearsRequest {
        branch_id: branch.into(),
        as_of_date: as_of.into(),
        ..Default::default()
    };
    let mut loans = Vec::new();
    loop {
        let page = app
            .audit
            .list_loans_in_arrears(request.clone())
            .await
            .unwrap()
            .into_inner();
        loans.extend(page.loans);
        if page.next_page_token.is_empty() {
            break;
        }
        request.as_of_date = page.as_of_date;
        request.page_token = page.next_page_token;
    }
    loans.sort_by(|a: &pb::LoanArrears, b| {
        b.days_in_arrears
            .cmp(&a.days_in_arrears)
            .then_with(|| a.loan_id.cmp(&b.loan_id))
    });
    loans
}

/// Serves `ledger`, which the test started itself (on its own store or with
/// its own rules), on 127.0.0.1 port 0; `dir` lives as long as the app.
pub async fn serve_ledger(ledger: Arc<Ledger>, dir: TempDir, limits: ServerLimits) -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = ledger.clone();
    let server = tokio::spawn(async move {
        api::serve(listener, served, limits, None, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let token = tester_token(&ledger, dir.path()).await;
    let channel = connect(address, &token).await;
    App {
        branch: BranchServiceClient::new(channel.clone()),
        audit: AuditServiceClient::new(channel),
        token,
        clock: None,
        ledger,
        dir,
        address,
        stop: Some(stop),
        server: Some(server),
    }
}

/// A channel that sends `token`.
pub type Conn = mfi_ledger::cli::connect::Conn;

/// `channel`, sending `token` with every call.
pub fn with_token(channel: Channel, token: &str) -> Conn {
    tonic::service::interceptor::InterceptedService::new(
        channel,
        mfi_ledger::cli::connect::Bearer::new(Some(token)).unwrap(),
    )
}

/// A new connection to the server at `address`, sending `token`.
pub async fn connect(address: std::net::SocketAddr, token: &str) -> Conn {
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    with_token(channel, token)
}

/// Entries a new test ledger starts with: the first administrator and
/// `tester` (see [`tester_token`]).
pub const ACCESS_ENTRIES: u64 = 2;

/// The principal who approves what `tester` asks (see [`App::checker_token`]).
pub const CHECKER: &str = "checker";

/// The principal the tests write and read as.
pub const TESTER: &str = "tester";

/// The first administrator's token (written by the bootstrap in `dir`).
#[allow(dead_code)]
pub fn admin_token(dir: &std::path::Path) -> String {
    mfi_ledger::auth::read_secret(&dir.join(mfi_ledger::auth::FIRST_ADMINISTRATOR_TOKEN_FILE))
        .unwrap()
}

/// On a new ledger: the first administrator (entry 1) and `tester`, a
/// manager, product admin and auditor of the whole institution (entry 2),
/// whose token is kept in `dir` for restarts. Returns tester's token.
pub async fn tester_token(ledger: &Ledger, dir: &std::path::Path) -> String {
    use mfi_ledger::domain::access::{Role, RoleGrant, Scope};
    let file = dir.join("tester.token");
    if file.exists() {
        return mfi_ledger::auth::read_secret(&file).unwrap();
    }
    mfi_ledger::auth::bootstrap(ledger, dir).await.unwrap();
    let admin = mfi_ledger::domain::ids::PrincipalId::parse("p", "admin").unwrap();
    let grants = [Role::Manager, Role::ProductAdmin, Role::Auditor]
        .into_iter()
        .map(|role| RoleGrant {
            role,
            scope: Scope::Institution,
        })
        .collect();
    // Valid for a century: a test ledger's clock is in 2024, and some tests
    // serve its data directory again with the binary, on the machine's clock.
    let token =
        mfi_ledger::auth::create_principal_in_process(ledger, &admin, TESTER, grants, 36_500)
            .await
            .unwrap();
    mfi_ledger::auth::write_secret(&file, &token).unwrap();
    token
}

/// On a server started from the binary on `dir` (which wrote the first
/// administrator's token there): creates `tester` over gRPC, as
/// [`tester_token`] does in process, keeping its token in `dir`.
#[allow(dead_code)]
pub async fn tester_token_over_grpc(address: &str, dir: &std::path::Path) -> String {
    let file = dir.join("tester.token");
    if file.exists() {
        return mfi_ledger::auth::read_secret(&file).unwrap();
    }
    let admin = admin_token(dir);
    let channel = connect(address.parse().unwrap(), &admin).await;
    let mut access = mfi_ledger::pb::access_service_client::AccessServiceClient::new(channel);
    let roles = ["manager", "product-admin", "auditor"]
        .into_iter()
        .map(|role| pb::RoleGrant {
            role: role.into(),
            branch_id: String::new(),
        })
        .collect();
    let reply = access
        .create_principal(pb::CreatePrincipalRequest {
            context: ctx("create-tester"),
            principal_id: TESTER.into(),
            name: TESTER.into(),
            roles,
            issue_token: true,
            token_valid_days: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let token = reply.token.unwrap().token;
    mfi_ledger::auth::write_secret(&file, &token).unwrap();
    token
}

/// What the server's health service says of `service` ("" for the server
/// as a whole).
#[allow(dead_code)]
pub async fn health(
    app: &App,
    service: &str,
) -> tonic_health::pb::health_check_response::ServingStatus {
    let channel = Channel::from_shared(format!("http://{}", app.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let reply = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner();
    reply.status()
}

/// Starts the binary at `binary` as `serve` on 127.0.0.1 port 0 over `dir`
/// (killed when dropped); returns it and the address it says it listens on.
pub async fn serve_binary(binary: &str, dir: &std::path::Path) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(binary)
        .args(["serve", "--init", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the server binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("the server says where it listens within 30 s")
        .unwrap()
        .expect("a line on stdout");
    let address = line
        .strip_prefix("mfi-ledger listening on ")
        .expect("the listening line")
        .to_owned();
    (child, address)
}

/// The store of a new data directory `dir`: the embedded one, or on the
/// PostgreSQL suite a database of its server.
pub async fn open_store(dir: &std::path::Path) -> Arc<dyn mfi_ledger::store::Store> {
    match crate::ON_POSTGRES {
        true => postgres::open(dir).await,
        false => Arc::new(open_disk_store(dir)),
    }
}

/// `verify` of a stopped server's data directory: on the PostgreSQL store,
/// of a copy of it with the database's journal copied in (the journal, the
/// state cache, the checkpoints and the access log all checked).
pub fn verify(
    dir: &std::path::Path,
) -> Result<mfi_ledger::verify::VerifyReport, mfi_ledger::verify::VerifyError> {
    if !crate::ON_POSTGRES || !dir.join("postgres.url").exists() {
        return mfi_ledger::verify::verify(dir);
    }
    let copy = tempfile::tempdir().unwrap();
    crate::common::copy_dir(dir, copy.path());
    let url = std::fs::read_to_string(dir.join("postgres.url")).unwrap();
    let path = copy.path().to_owned();
    // Off the test's runtime: the copy runs one of its own.
    std::thread::spawn(move || mfi_ledger::store::export_journal(&url, &path))
        .join()
        .unwrap()
        .unwrap();
    mfi_ledger::verify::verify(copy.path())
}

/// The suite on the PostgreSQL store (`tests/postgres_suite.rs`): each data
/// directory's journal is a database of one PostgreSQL server the test
/// binary starts once and stops at exit.
mod postgres {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, OnceLock};

    use mfi_ledger::store::{PostgresOptions, PostgresStore, Store};

    use crate::common::postgres::Cluster;

    /// The server, started on a thread that never ends (its parent-death
    /// signal is the thread's), and stopped at exit.
    fn cluster() -> Option<&'static Cluster> {
        static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
        CLUSTER
            .get_or_init(|| {
                let (sender, receiver) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let _ = sender.send(Cluster::start("the suite on the PostgreSQL store"));
                    loop {
                        std::thread::park();
                    }
                });
                let cluster = receiver.recv().unwrap();
                extern "C" fn stop() {
                    if let Some(Some(cluster)) = CLUSTER.get() {
                        cluster.remove_at_exit();
                    }
                }
                // SAFETY: registers a function without arguments that the C
                // runtime calls once at exit.
                unsafe { libc::atexit(stop) };
                cluster
            })
            .as_ref()
    }

    /// The store of data directory `dir`: its database named in
    /// `dir/postgres.url`, made on the directory's first start. Without
    /// PostgreSQL (outside CI: `Cluster::start` fails under CI=true), the
    /// embedded store, after the banner `Cluster::start` printed.
    pub async fn open(dir: &std::path::Path) -> Arc<dyn Store> {
        static DATABASES: AtomicU64 = AtomicU64::new(0);
        let Some(cluster) = cluster() else {
            return Arc::new(mfi_ledger::store::DiskStore::open(dir).unwrap());
        };
        let file = dir.join("postgres.url");
        let url = match std::fs::read_to_string(&file) {
            Ok(url) => url,
            Err(_) => {
                let name = format!("books_{}", DATABASES.fetch_add(1, Ordering::SeqCst));
                let url = cluster.database(&name);
                std::fs::write(&file, &url).unwrap();
                url
            }
        };
        let options = PostgresOptions::new(url);
        // The last server on the directory lets go of its lock as it stops:
        // allow it a moment.
        for attempt in 0.. {
            let (path, options) = (dir.to_owned(), options.clone());
            let opened = tokio::task::spawn_blocking(move || PostgresStore::open(&path, &options))
                .await
                .unwrap();
            match opened {
                Ok(store) => return Arc::new(store),
                Err(error) if attempt < 250 => {
                    let _ = error;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(error) => panic!("opening the PostgreSQL store: {error}"),
            }
        }
        unreachable!()
    }
}

/// Every account of `branch`'s chart of accounts (every branch's when
/// empty), read `page_size` at a time, each page checked to hold no more.
pub async fn chart(
    books: &mut pb::books_service_client::BooksServiceClient<Conn>,
    branch: &str,
    page_size: u32,
) -> Vec<pb::ChartAccount> {
    let (mut accounts, mut token) = (Vec::new(), String::new());
    loop {
        let page = books
            .list_accounts(pb::ListAccountsRequest {
                branch_id: branch.into(),
                page_size,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.accounts.len() <= page_size as usize);
        accounts.extend(page.accounts);
        if page.next_page_token.is_empty() {
            return accounts;
        }
        token = page.next_page_token;
    }
}
