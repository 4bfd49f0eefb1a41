//! The client commands a branch clerk, a product manager or an auditor runs
//! against the ledger service: writes (`branch-create` … `reverse`) through
//! `BranchService` and `ProductService`, and reads (`balance` … `info`)
//! through `AuditService` and `ProductService`.
//!
//! Every command prints a readable table or list, or JSON with `--json`
//! (amounts as exact strings, enum values by name). Every write carries a
//! request id (`--request-id`, a fresh UUID by default) so that retrying it
//! is safe, and prints its journal receipt before its result. A refusal is
//! returned as an error `<code>: <message>`.
//!
//! Modules: [`args`] (what each command takes), `connect` (channels and
//! errors), `setup`, `transactions` and `sheet` (writes; `sheet` reads a
//! collection sheet's CSV), `products` (the catalogue and schedule
//! previews), `reads`, `reports` and `portfolio` (reads), `output` (tables
//! and formatting), `access` (principals, roles and credentials), `audit`
//! (the auditor's side of the provable journal: kept checkpoints, inclusion
//! proofs, replay) and `witness` (cosigning checkpoints that extend the last).

mod access;
mod approvals;
pub mod args;
mod audit;
mod backup;
mod books;
pub mod connect;
pub(crate) mod output;
pub use output::{Report, describe};
mod portfolio;
mod products;
mod reads;
mod reports;
mod setup;
mod sheet;
mod transactions;
mod witness;

pub use self::sheet::parse_collection_sheet;

use std::path::PathBuf;

use clap::{Args, Subcommand};

use self::args::{
    ArrearsArgs, BalanceArgs, BranchCreateArgs, CenterCreateArgs, ClosePeriodArgs,
    CollectionSheetArgs, DisburseArgs, FundingArgs, GroupCreateArgs, JournalArgs, LoanArgs,
    MemberArgs, OpenSavingsArgs, PayoffArgs, PortfolioArgs, PostInterestArgs, PreviewArgs,
    ProductArgs, ProductDefineArgs, RegisterArgs, ReopenPeriodArgs, RepayArgs, ReverseArgs,
    SavingsMoveArgs, SavingsProductArgs, TotalsArgs, TrancheArgs, WriteOffArgs,
};
use self::connect::WriteSession;

/// Actor named in writes when neither `--actor` nor `$USER` is set.
const DEFAULT_ACTOR: &str = "clerk";
/// Heading of the options every client command takes, in `--help`.
const CLIENT_OPTIONS: &str = "Client options";

/// Options every client command takes.
#[derive(Args, Clone, Debug)]
pub struct ClientOptions {
    /// Address of the ledger service.
    #[arg(
        long,
        global = true,
        help_heading = CLIENT_OPTIONS,
        env = "MFI_LEDGER_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// Print JSON instead of tables (amounts as exact strings).
    #[arg(long, global = true, help_heading = CLIENT_OPTIONS)]
    pub json: bool,
    /// Who enters a write, 1 to 64 characters [default: $USER, else "clerk"].
    #[arg(long, global = true, help_heading = CLIENT_OPTIONS, env = "MFI_LEDGER_ACTOR")]
    pub actor: Option<String>,
    /// Id of a write, to retry it safely: the ledger applies a request id at
    /// most once [default: a new UUID].
    #[arg(long, global = true, help_heading = CLIENT_OPTIONS, value_name = "ID")]
    pub request_id: Option<String>,
    /// The bearer token to authenticate with [default: --token-file, else
    /// ~/.config/mfi-ledger/token if it exists].
    #[arg(
        long,
        global = true,
        help_heading = CLIENT_OPTIONS,
        env = "MFI_LEDGER_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// A file holding the bearer token (e.g. the first administrator's,
    /// DATA/admin.token).
    #[arg(
        long,
        global = true,
        help_heading = CLIENT_OPTIONS,
        env = "MFI_LEDGER_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub token_file: Option<PathBuf>,
    /// For an https:// server: the CA certificate (PEM) that signed its certificate.
    #[arg(long, global = true, help_heading = CLIENT_OPTIONS, env = "MFI_LEDGER_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// For mutual TLS: the client certificate (PEM); needs --key and --ca.
    #[arg(long, global = true, help_heading = CLIENT_OPTIONS, env = "MFI_LEDGER_CERT", value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// For mutual TLS: the client certificate's private key (PEM).
    #[arg(long, global = true, help_heading = CLIENT_OPTIONS, env = "MFI_LEDGER_KEY", value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

impl ClientOptions {
    /// The credentials these options give: the token, and TLS settings.
    pub fn credentials(&self) -> anyhow::Result<connect::Credentials> {
        let token = connect::resolve_token(self.token.clone(), self.token_file.as_deref())?;
        let tls = match (&self.ca, &self.cert, &self.key) {
            (None, None, _) => None,
            (None, Some(_), _) => {
                anyhow::bail!("--cert needs --ca (the CA of the server's certificate)")
            }
            (Some(ca), cert, key) => Some(crate::api::tls::client_config(
                ca,
                cert.as_deref().zip(key.as_deref()),
            )?),
        };
        Ok(connect::Credentials { token, tls })
    }
}

impl ClientOptions {
    /// The session a write runs in: actor and request id resolved.
    fn write_session(&self) -> WriteSession {
        let actor = self
            .actor
            .clone()
            .filter(|actor| !actor.is_empty())
            .or_else(|| std::env::var("USER").ok().filter(|user| !user.is_empty()))
            .unwrap_or_else(|| DEFAULT_ACTOR.to_owned());
        let request_id = self
            .request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        WriteSession {
            server: self.server.clone(),
            request_id,
            actor,
        }
    }
}

/// Client commands: writes, then reads, then access control.
#[derive(Subcommand, Clone, Debug)]
pub enum ClientCommand {
    #[command(flatten)]
    Write(WriteCommand),
    #[command(flatten)]
    Read(ReadCommand),
    #[command(flatten)]
    Access(access::AccessCommand),
    #[command(flatten)]
    Approvals(approvals::ApprovalCommand),
    #[command(flatten)]
    Books(books::BooksCommand),
    /// Check the books without trusting the server: keep signed
    /// checkpoints, prove entries in them, replay the journal against them.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Cosign the log's checkpoints, each only if it extends the last one
    /// this witness cosigned.
    Witness(witness::WitnessArgs),
    /// Copy a running server's data directory to a new directory while it
    /// serves (the journal up to its durable head, the checkpoints, the
    /// access log and the log's keys), then verify the copy. Administrators.
    Backup(backup::BackupArgs),
}

/// Commands that append an entry to the journal.
#[derive(Subcommand, Clone, Debug)]
pub enum WriteCommand {
    /// Create a branch, the root of centers, groups and members.
    BranchCreate(BranchCreateArgs),
    /// Create a center (where groups meet) in a branch.
    CenterCreate(CenterCreateArgs),
    /// Create a group of members in a center.
    GroupCreate(GroupCreateArgs),
    /// Register a member in a group.
    Register(RegisterArgs),
    /// Open a compulsory or voluntary savings account; prints its id.
    OpenSavings(OpenSavingsArgs),
    /// Define a loan product (its version 1); prints the version.
    ///
    /// Needs --name, --principal-min, --principal-max, --rate (or --rate-min
    /// and --rate-max), --method, --frequency and --installments (or
    /// --installments-min); every other rule has the default shown.
    ProductCreate(Box<ProductDefineArgs>),
    /// Define a product's next version; prints it.
    ///
    /// Starts from the latest version's rules and changes only the flags
    /// given. Loans already disbursed keep their version.
    ProductUpdate(Box<ProductDefineArgs>),
    /// Record a savings deposit; prints the balance after.
    Deposit(SavingsMoveArgs),
    /// Record a savings withdrawal; prints the balance after.
    Withdraw(SavingsMoveArgs),
    /// Disburse a loan under a product (--product) or on terms in full;
    /// prints its id, fees, cash paid out and schedule.
    Disburse(DisburseArgs),
    /// Disburse a further tranche of a loan; prints the recomputed installments.
    Tranche(TrancheArgs),
    /// Record a loan repayment: dues oldest first, then interest accrued,
    /// then principal paid ahead; prints the allocation.
    Repay(RepayArgs),
    /// Record a center meeting's repayments and deposits from a CSV file, as
    /// one entry (all lines or none).
    CollectionSheet(CollectionSheetArgs),
    /// Write a loan's outstanding principal off to loan loss.
    WriteOff(WriteOffArgs),
    /// Reverse an earlier entry with one of opposite postings.
    Reverse(ReverseArgs),
    /// Close a branch's books through a date: later writes dated on or
    /// before it are refused; 31 December carries the year's result into
    /// retained earnings.
    ClosePeriod(ClosePeriodArgs),
    /// Ask to reopen a branch's closed books from a date (a second manager
    /// approves it).
    ReopenPeriod(ReopenPeriodArgs),
    /// Post the savings interest a branch's accounts earned over the period
    /// ending on a date (once per period); prints each account credited.
    PostInterest(PostInterestArgs),
    /// Define a savings product (compulsory or voluntary) or its next
    /// version: the interest its kind of account earns.
    SavingsProductDefine(SavingsProductArgs),
    /// Record money put into a branch's cash from head office or capital
    /// (debit cash, credit the source); prints what the branch holds from
    /// the source.
    Fund(FundingArgs),
    /// Record money of a branch's cash given back to head office or capital
    /// (debit the source, credit cash), at most what it holds from it.
    ReturnFunding(FundingArgs),
}

/// Commands that only read.
#[derive(Subcommand, Clone, Debug)]
pub enum ReadCommand {
    /// Show an account's balance.
    Balance(BalanceArgs),
    /// Show a member with her savings accounts and loans.
    Member(MemberArgs),
    /// Show a loan: product, terms, outstanding, overdue, arrears, payoff
    /// amount, schedule with payments.
    Loan(LoanArgs),
    /// Show what pays a loan off on a date, part by part.
    Payoff(PayoffArgs),
    /// List the loan products (latest versions).
    Products,
    /// List the savings products with every version.
    SavingsProducts,
    /// Show a product's rules.
    Product(ProductArgs),
    /// Preview the schedule a loan under a product would get (writes nothing).
    Preview(PreviewArgs),
    /// List the loans in arrears on a date, most days overdue first.
    Arrears(ArrearsArgs),
    /// Show portfolio quality: gross portfolio, PAR1/30/90, borrowers,
    /// repayment rate, write-offs and recoveries.
    Portfolio(PortfolioArgs),
    /// Show a branch's totals for a period beside the previous period.
    Totals(TotalsArgs),
    /// List journal entries in sequence order.
    Journal(JournalArgs),
    /// Show the journal's head: last sequence number and hash.
    Info,
}

/// Runs a client command and prints its result.
pub async fn run(options: ClientOptions, command: ClientCommand) -> anyhow::Result<()> {
    let report = match command {
        ClientCommand::Write(command) => write(&options.write_session(), command).await?,
        ClientCommand::Read(command) => read(&options.server, command).await?,
        ClientCommand::Access(command) => access::run(&options, command).await?,
        ClientCommand::Approvals(command) => approvals::run(&options, command).await?,
        ClientCommand::Books(command) => books::run(&options.server, command).await?,
        ClientCommand::Audit(command) => audit::run(&options.server, command).await?,
        ClientCommand::Witness(args) => witness::run(&options.server, options.json, args).await?,
        ClientCommand::Backup(args) => backup::backup(&options.server, args).await?,
    };
    report.print(options.json)
}

/// Runs a write.
async fn write(session: &WriteSession, command: WriteCommand) -> anyhow::Result<Report> {
    match command {
        WriteCommand::BranchCreate(args) => setup::branch_create(session, args).await,
        WriteCommand::CenterCreate(args) => setup::center_create(session, args).await,
        WriteCommand::GroupCreate(args) => setup::group_create(session, args).await,
        WriteCommand::Register(args) => setup::register(session, args).await,
        WriteCommand::OpenSavings(args) => setup::open_savings(session, args).await,
        WriteCommand::ProductCreate(args) => products::create(session, *args).await,
        WriteCommand::ProductUpdate(args) => products::update(session, *args).await,
        WriteCommand::Deposit(args) => transactions::deposit(session, args).await,
        WriteCommand::Withdraw(args) => transactions::withdraw(session, args).await,
        WriteCommand::Disburse(args) => transactions::disburse(session, args).await,
        WriteCommand::Tranche(args) => transactions::tranche(session, args).await,
        WriteCommand::Repay(args) => transactions::repay(session, args).await,
        WriteCommand::CollectionSheet(args) => sheet::collection_sheet(session, args).await,
        WriteCommand::WriteOff(args) => transactions::write_off(session, args).await,
        WriteCommand::Reverse(args) => transactions::reverse(session, args).await,
        WriteCommand::ClosePeriod(args) => transactions::close_period(session, args).await,
        WriteCommand::ReopenPeriod(args) => transactions::reopen_period(session, args).await,
        WriteCommand::PostInterest(args) => transactions::post_interest(session, args).await,
        WriteCommand::SavingsProductDefine(args) => products::define_savings(session, args).await,
        WriteCommand::Fund(args) => transactions::fund(session, args).await,
        WriteCommand::ReturnFunding(args) => transactions::return_funding(session, args).await,
    }
}

/// Runs a read.
async fn read(server: &str, command: ReadCommand) -> anyhow::Result<Report> {
    match command {
        ReadCommand::Balance(args) => reads::balance(server, args).await,
        ReadCommand::Member(args) => reads::member(server, args).await,
        ReadCommand::Loan(args) => reads::loan(server, args).await,
        ReadCommand::Payoff(args) => reads::payoff(server, args).await,
        ReadCommand::Products => products::list(server).await,
        ReadCommand::SavingsProducts => products::list_savings(server).await,
        ReadCommand::Product(args) => products::show(server, args).await,
        ReadCommand::Preview(args) => products::preview(server, args).await,
        ReadCommand::Arrears(args) => portfolio::arrears(server, args).await,
        ReadCommand::Portfolio(args) => portfolio::portfolio(server, args).await,
        ReadCommand::Totals(args) => reports::totals(server, args).await,
        ReadCommand::Journal(args) => reports::journal(server, args).await,
        ReadCommand::Info => reads::info(server).await,
    }
}
