//! Arguments of the client commands. Amounts, rates and dates are strings
//! passed to the server exactly as typed; the server checks them and names
//! the field at fault.

use clap::{ArgGroup, Args, ValueEnum};

use crate::pb;

/// Arguments of `branch-create`.
#[derive(Args, Clone, Debug)]
pub struct BranchCreateArgs {
    /// Short code of the new branch, e.g. TB (1 to 32 characters of A-Z a-z 0-9 . _ -).
    pub id: String,
    /// Display name, e.g. "TYM - Chi nhánh Thái Bình".
    #[arg(long)]
    pub name: String,
    /// IANA time zone of the branch's calendar [server default: Asia/Ho_Chi_Minh].
    #[arg(long, value_name = "TZ")]
    pub time_zone: Option<String>,
    /// ISO 4217 currency of the branch's books, e.g. VND [server default: VND].
    #[arg(long)]
    pub currency: Option<String>,
    /// Share of outstanding loan principal a borrower must keep in compulsory
    /// savings, in percent, 0 to 100 [server default: 5].
    #[arg(long, value_name = "P")]
    pub compulsory_savings_percent: Option<String>,
    /// Date the branch opened, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub opened_on: Option<String>,
}

/// Arguments of `center-create`.
#[derive(Args, Clone, Debug)]
pub struct CenterCreateArgs {
    /// Id of the new center, unique in the ledger (1 to 32 characters of A-Z a-z 0-9 . _ -).
    pub id: String,
    /// Branch the center belongs to.
    #[arg(long, value_name = "BRANCH")]
    pub branch: String,
    /// Display name of the center.
    #[arg(long)]
    pub name: String,
    /// Date the center was founded, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub opened_on: Option<String>,
}

/// Arguments of `group-create`.
#[derive(Args, Clone, Debug)]
pub struct GroupCreateArgs {
    /// Id of the new group, unique in the ledger (1 to 32 characters of A-Z a-z 0-9 . _ -).
    pub id: String,
    /// Center the group meets in.
    #[arg(long, value_name = "CENTER")]
    pub center: String,
    /// Display name of the group.
    #[arg(long)]
    pub name: String,
    /// Date the group was formed, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub opened_on: Option<String>,
}

/// Arguments of `register`.
#[derive(Args, Clone, Debug)]
pub struct RegisterArgs {
    /// Member id, unique in the ledger, e.g. TB-0001.
    pub member_id: String,
    /// Full name, e.g. "Nguyễn Thị Hoa".
    #[arg(long)]
    pub name: String,
    /// Group the member belongs to (which gives her center and branch).
    #[arg(long, value_name = "GROUP")]
    pub group: String,
    /// Date she joined, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub joined_on: Option<String>,
}

/// Kind of savings account.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SavingsKindArg {
    /// Tied to loans: kept above a share of her outstanding principal (at most one per member).
    Compulsory,
    /// Withdrawable freely down to zero.
    Voluntary,
}

impl From<SavingsKindArg> for pb::SavingsKind {
    fn from(kind: SavingsKindArg) -> Self {
        match kind {
            SavingsKindArg::Compulsory => pb::SavingsKind::Compulsory,
            SavingsKindArg::Voluntary => pb::SavingsKind::Voluntary,
        }
    }
}

/// Arguments of `open-savings`.
#[derive(Args, Clone, Debug)]
pub struct OpenSavingsArgs {
    /// Member who owns the account.
    pub member_id: String,
    /// Compulsory or voluntary.
    #[arg(long, value_enum)]
    pub kind: SavingsKindArg,
    /// Date the account opened, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub opened_on: Option<String>,
}

/// Arguments of `deposit` and `withdraw`.
#[derive(Args, Clone, Debug)]
pub struct SavingsMoveArgs {
    /// Savings account, e.g. TB-0001/C1.
    pub account_id: String,
    /// Positive amount as a plain decimal, e.g. 50000 (no separators).
    pub amount: String,
    /// ISO 4217 currency of the amount [default: the branch's].
    #[arg(long)]
    pub currency: Option<String>,
    /// Business date, YYYY-MM-DD, not in the future [default: today].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
}

/// How interest is charged.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MethodArg {
    /// Interest on the original principal every period.
    Flat,
    /// Interest on the outstanding balance, with equal installments.
    #[value(alias = "declining-balance")]
    Declining,
}

impl From<MethodArg> for pb::InterestMethod {
    fn from(method: MethodArg) -> Self {
        match method {
            MethodArg::Flat => pb::InterestMethod::Flat,
            MethodArg::Declining => pb::InterestMethod::DecliningBalance,
        }
    }
}

/// How often installments fall due.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FrequencyArg {
    /// Every 7 days.
    Weekly,
    /// Every 14 days.
    Fortnightly,
    /// Every calendar month, on the first repayment's day (or the month's last day).
    Monthly,
}

impl From<FrequencyArg> for pb::RepaymentFrequency {
    fn from(frequency: FrequencyArg) -> Self {
        match frequency {
            FrequencyArg::Weekly => pb::RepaymentFrequency::Weekly,
            FrequencyArg::Fortnightly => pb::RepaymentFrequency::Fortnightly,
            FrequencyArg::Monthly => pb::RepaymentFrequency::Monthly,
        }
    }
}

/// Heading of `disburse`'s options for a loan under a catalogue product.
const UNDER_PRODUCT: &str = "Under a product (--product)";
/// Heading of `disburse`'s options for a loan outside the catalogue.
const OUTSIDE_CATALOGUE: &str = "Outside the catalogue (terms in full, no --product)";

/// Arguments of `disburse`: a loan under a catalogue product (`--product`),
/// or outside the catalogue with its terms in full (`--method`,
/// `--frequency`, `--rate`, `--installments`).
#[derive(Args, Clone, Debug)]
pub struct DisburseArgs {
    /// Borrower; she must hold a compulsory savings account.
    pub member_id: String,
    /// Principal (of the first tranche under a product) as a plain decimal, e.g. 10000000.
    #[arg(long, value_name = "AMOUNT")]
    pub principal: String,
    /// ISO 4217 currency of the principal [default: the branch's].
    #[arg(long)]
    pub currency: Option<String>,
    /// Annual nominal interest rate in percent, e.g. 18 [under a product: its
    /// rate when it has only one].
    #[arg(long, value_name = "PERCENT", required_unless_present = "product")]
    pub rate: Option<String>,
    /// Number of installments, 1 to 520 [under a product: its default].
    #[arg(long, value_name = "N", required_unless_present = "product")]
    pub installments: Option<u32>,
    /// Due date of the first installment, YYYY-MM-DD, after the disbursement date.
    #[arg(long, value_name = "DATE")]
    pub first_repayment: String,
    /// Disbursement date, YYYY-MM-DD, not in the future [default: today].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
    /// Catalogue product the loan is disbursed under (its latest version),
    /// which sets method, frequency, rounding, fees and limits.
    #[arg(long, value_name = "PRODUCT", help_heading = UNDER_PRODUCT)]
    pub product: Option<String>,
    /// Total the loan may reach through tranches [default: --principal].
    #[arg(long, value_name = "AMOUNT", requires = "product", help_heading = UNDER_PRODUCT)]
    pub approved: Option<String>,
    /// Flat or declining balance.
    #[arg(
        long,
        value_enum,
        required_unless_present = "product",
        conflicts_with = "product",
        help_heading = OUTSIDE_CATALOGUE
    )]
    pub method: Option<MethodArg>,
    /// How often installments fall due.
    #[arg(
        long,
        value_enum,
        required_unless_present = "product",
        conflicts_with = "product",
        help_heading = OUTSIDE_CATALOGUE
    )]
    pub frequency: Option<FrequencyArg>,
    /// Round installments to a multiple of this, e.g. 1000 [default: the currency's unit].
    #[arg(
        long,
        value_name = "MULTIPLE",
        conflicts_with = "product",
        help_heading = OUTSIDE_CATALOGUE
    )]
    pub rounding: Option<String>,
}

/// Arguments of `tranche`.
#[derive(Args, Clone, Debug)]
pub struct TrancheArgs {
    /// Loan, e.g. TB-0001/L1; its product must allow another tranche.
    pub loan_id: String,
    /// Amount of the tranche as a plain decimal; the loan's total stays within
    /// its approved principal.
    pub amount: String,
    /// ISO 4217 currency of the amount [default: the branch's].
    #[arg(long)]
    pub currency: Option<String>,
    /// Disbursement date, YYYY-MM-DD, not in the future, before the loan's
    /// last due date [default: today].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
}

/// Arguments of `write-off`.
#[derive(Args, Clone, Debug)]
pub struct WriteOffArgs {
    /// Loan, e.g. TB-0001/L1; active with principal outstanding.
    pub loan_id: String,
    /// Why, for the auditors, 1 to 200 characters.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Business date, YYYY-MM-DD, not in the future nor before the loan's
    /// last transaction [default: today].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
}

/// Arguments of `close-period`.
#[derive(Args, Clone, Debug)]
pub struct ClosePeriodArgs {
    /// Branch, e.g. TB.
    pub branch_id: String,
    /// Last day closed, YYYY-MM-DD: a day that is over (31 December also
    /// carries the year's result into retained earnings).
    #[arg(long, value_name = "DATE")]
    pub through: String,
}

/// Arguments of `reopen-period`.
#[derive(Args, Clone, Debug)]
pub struct ReopenPeriodArgs {
    /// Branch, e.g. TB.
    pub branch_id: String,
    /// First day reopened, YYYY-MM-DD; the books stay closed through the day before.
    #[arg(long, value_name = "DATE")]
    pub from: String,
    /// Why, for the auditors, 1 to 200 characters.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

/// Arguments of `post-interest`.
#[derive(Args, Clone, Debug)]
pub struct PostInterestArgs {
    /// Branch, e.g. TB.
    pub branch_id: String,
    /// Last day of the posting period, YYYY-MM-DD (a month's, quarter's,
    /// half-year's or year's end, as the savings products post).
    #[arg(long, value_name = "DATE")]
    pub period_end: String,
}

/// Where a branch's funds come from.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FundingSourceArg {
    /// The head office, which the branch owes them (a liability).
    HeadOffice,
    /// Paid-in capital or donated equity (equity).
    Capital,
}

impl From<FundingSourceArg> for pb::FundingSource {
    fn from(source: FundingSourceArg) -> Self {
        match source {
            FundingSourceArg::HeadOffice => pb::FundingSource::HeadOffice,
            FundingSourceArg::Capital => pb::FundingSource::Capital,
        }
    }
}

/// Arguments of `fund` and `return-funding`.
#[derive(Args, Clone, Debug)]
pub struct FundingArgs {
    /// Branch, e.g. TB.
    pub branch_id: String,
    /// Positive amount as a plain decimal, e.g. 500000000 (no separators).
    pub amount: String,
    /// Where the money comes from (or, returning it, goes back to).
    #[arg(long, value_enum)]
    pub source: FundingSourceArg,
    /// ISO 4217 currency of the amount [default: the branch's].
    #[arg(long)]
    pub currency: Option<String>,
    /// Business date, YYYY-MM-DD, not in the future [default: today].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
}

/// How often savings interest is posted.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PostingArg {
    /// At each month's end.
    Monthly,
    /// At the end of each quarter.
    Quarterly,
    /// At the end of June and December.
    HalfYearly,
    /// At the end of December.
    Yearly,
}

impl From<PostingArg> for pb::PostingFrequency {
    fn from(value: PostingArg) -> Self {
        match value {
            PostingArg::Monthly => pb::PostingFrequency::Monthly,
            PostingArg::Quarterly => pb::PostingFrequency::Quarterly,
            PostingArg::HalfYearly => pb::PostingFrequency::HalfYearly,
            PostingArg::Yearly => pb::PostingFrequency::Yearly,
        }
    }
}

/// Arguments of `savings-product-define`.
#[derive(Args, Clone, Debug)]
pub struct SavingsProductArgs {
    /// Product id, e.g. SAVE-VOL.
    pub product_id: String,
    /// Its name.
    #[arg(long, value_name = "TEXT")]
    pub name: String,
    /// The kind of savings it covers (one product per kind).
    #[arg(long, value_enum)]
    pub kind: SavingsKindArg,
    /// Yearly rate in percent, on the daily closing balance, actual/365.
    #[arg(long, value_name = "PERCENT")]
    pub rate: String,
    /// When interest is posted.
    #[arg(long, value_enum, default_value = "monthly")]
    pub posting: PostingArg,
    /// The posted amount is a multiple of this.
    #[arg(long, value_name = "MULTIPLE", default_value = "1")]
    pub rounding: String,
    /// How it is rounded to the multiple.
    #[arg(long, value_enum, default_value = "half-even")]
    pub rounding_mode: RoundingModeArg,
    /// First day the rate applies, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub effective_from: Option<String>,
}

/// Arguments of `collection-sheet`.
#[derive(Args, Clone, Debug)]
pub struct CollectionSheetArgs {
    /// Center that met, e.g. C1.
    pub center_id: String,
    /// CSV file with a header row naming the columns member_id, loan_id,
    /// repayment, savings_account_id, deposit (any order; empty cells allowed;
    /// lines starting with # and blank lines ignored; amounts as plain decimals).
    #[arg(long, value_name = "SHEET.csv")]
    pub file: std::path::PathBuf,
    /// Date of the meeting, YYYY-MM-DD, the date of every line [default: today].
    #[arg(long, value_name = "MEETING_DATE")]
    pub date: Option<String>,
}

/// Arguments of `repay`.
#[derive(Args, Clone, Debug)]
pub struct RepayArgs {
    /// Loan repaid, e.g. TB-0001/L1.
    pub loan_id: String,
    /// Positive amount paid, at most the payoff amount on the date (see `payoff`).
    pub amount: String,
    /// ISO 4217 currency of the amount [default: the branch's].
    #[arg(long)]
    pub currency: Option<String>,
    /// Business date, YYYY-MM-DD, not in the future nor before the loan's last
    /// transaction [default: today].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
}

/// Arguments of `reverse`.
#[derive(Args, Clone, Debug)]
pub struct ReverseArgs {
    /// Sequence number of the entry to reverse (a deposit, withdrawal, disbursement or repayment).
    pub sequence: u64,
    /// Why it is reversed, 1 to 200 characters.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Business date of the reversal, YYYY-MM-DD [default: the reversed entry's date].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
}

/// Arguments of `balance`.
#[derive(Args, Clone, Debug)]
pub struct BalanceArgs {
    /// Account: cash:BRANCH, interest-income:BRANCH, fee-income:BRANCH/FEE,
    /// loan-loss:BRANCH, recoveries:BRANCH, interest-expense:BRANCH,
    /// retained-earnings:BRANCH, head-office-funding:BRANCH, capital:BRANCH,
    /// savings:ACCOUNT_ID or loan:LOAN_ID
    /// (e.g. cash:TB, fee-income:TB/disbursement, savings:TB-0001/C1, loan:TB-0001/L1).
    pub account: String,
    #[command(flatten)]
    pub as_of: AsOfArgs,
}

/// A figure as of a date or a journal sequence number.
#[derive(Args, Clone, Debug, Default)]
pub struct AsOfArgs {
    /// The books at the end of this business date, YYYY-MM-DD (entries dated
    /// on or before it, back-dated ones included) [default: now].
    #[arg(long, value_name = "DATE", conflicts_with = "as_of_sequence")]
    pub as_of_date: Option<String>,
    /// The books as they stood right after this journal entry.
    #[arg(long, value_name = "SEQUENCE")]
    pub as_of_sequence: Option<u64>,
}

impl AsOfArgs {
    /// The request's `as_of`.
    pub fn to_pb(&self) -> Option<pb::AsOf> {
        let point = match (&self.as_of_date, self.as_of_sequence) {
            (Some(date), _) => pb::as_of::Point::Date(date.clone()),
            (None, Some(sequence)) => pb::as_of::Point::Sequence(sequence),
            (None, None) => return None,
        };
        Some(pb::AsOf { point: Some(point) })
    }
}

/// Arguments of `member`.
#[derive(Args, Clone, Debug)]
pub struct MemberArgs {
    /// Member id, e.g. TB-0001.
    pub member_id: String,
    /// The member as she stood right after this journal entry: her accounts
    /// and loans then, each as it was (later entries, back-dated ones too,
    /// left out) [default: now].
    #[arg(long, value_name = "SEQUENCE")]
    pub as_of_sequence: Option<u64>,
}

/// Arguments of `loan`.
#[derive(Args, Clone, Debug)]
pub struct LoanArgs {
    /// Loan id, e.g. TB-0001/L1.
    pub loan_id: String,
    /// Date installment statuses are computed for, YYYY-MM-DD [default: today
    /// in the branch's time zone; with --as-of-sequence, the day that entry
    /// was recorded].
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// The loan as it stood right after this journal entry (later entries,
    /// back-dated ones too, left out) [default: now].
    #[arg(long, value_name = "SEQUENCE")]
    pub as_of_sequence: Option<u64>,
}

/// Arguments of `totals`: a branch and exactly one period.
#[derive(Args, Clone, Debug)]
#[command(group(ArgGroup::new("period").required(true).args(["year", "month", "from"])))]
pub struct TotalsArgs {
    /// Branch id, e.g. TB.
    pub branch: String,
    /// A calendar year, e.g. 2024; compared with the year before.
    #[arg(long, value_name = "YEAR")]
    pub year: Option<i32>,
    /// A calendar month, YYYY-MM; compared with the month before.
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
    /// First day of a range, YYYY-MM-DD (with --to); compared with the same
    /// number of days just before it.
    #[arg(long, value_name = "DATE", requires = "to")]
    pub from: Option<String>,
    /// Last day of the range, YYYY-MM-DD, on or after --from.
    #[arg(long, value_name = "DATE", requires = "from")]
    pub to: Option<String>,
    /// The totals as the books gave them right after this journal entry
    /// (later entries, back-dated ones too, left out) [default: now].
    #[arg(long, value_name = "SEQUENCE")]
    pub as_of_sequence: Option<u64>,
}

/// Arguments of `journal`.
#[derive(Args, Clone, Debug)]
pub struct JournalArgs {
    /// First sequence number to show.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub from: u64,
    /// Most entries to show.
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
}

/// Arguments of `payoff`.
#[derive(Args, Clone, Debug)]
pub struct PayoffArgs {
    /// Loan, e.g. TB-0001/L1.
    pub loan_id: String,
    /// Date of the payoff, YYYY-MM-DD, not before the loan's last transaction [default: today].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
}

/// Arguments of `arrears`.
#[derive(Args, Clone, Debug)]
pub struct ArrearsArgs {
    /// Branch id, e.g. TB [default: all branches].
    pub branch: Option<String>,
    /// Date, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
}

/// Arguments of `portfolio`.
#[derive(Args, Clone, Debug)]
pub struct PortfolioArgs {
    /// Branch id, e.g. TB [default: all branches, which must share a currency].
    pub branch: Option<String>,
    /// Date of the portfolio figures (GLP, PAR, borrowers), YYYY-MM-DD [default: today; with
    /// --as-of-sequence, the day that entry was recorded].
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// The figures as the books gave them right after this journal entry
    /// (later entries, back-dated ones too, left out) [default: now].
    #[arg(long, value_name = "SEQUENCE")]
    pub as_of_sequence: Option<u64>,
    /// First day of the period of the repayment rate, write-offs and
    /// recoveries, YYYY-MM-DD (with --to) [default: 1 January of --as-of's year].
    #[arg(long, value_name = "DATE", requires = "to")]
    pub from: Option<String>,
    /// Last day of that period, YYYY-MM-DD [default: --as-of].
    #[arg(long, value_name = "DATE", requires = "from")]
    pub to: Option<String>,
}

/// Arguments of `product`.
#[derive(Args, Clone, Debug)]
pub struct ProductArgs {
    /// Product id, e.g. GENERAL.
    pub product_id: String,
    /// Version to show [default: the latest].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub version: Option<u32>,
}

/// Arguments of `preview`.
#[derive(Args, Clone, Debug)]
pub struct PreviewArgs {
    /// Product id, e.g. GENERAL.
    pub product_id: String,
    /// Version of the product [default: the latest].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub version: Option<u32>,
    /// Principal as a plain decimal, e.g. 10000000.
    #[arg(long, value_name = "AMOUNT")]
    pub principal: String,
    /// ISO 4217 currency of the principal [default: the product's].
    #[arg(long)]
    pub currency: Option<String>,
    /// Annual interest rate in percent [default: the product's when it has only one].
    #[arg(long, value_name = "PERCENT")]
    pub rate: Option<String>,
    /// Number of installments [default: the product's default].
    #[arg(long, value_name = "N")]
    pub installments: Option<u32>,
    /// Disbursement date, YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    pub date: String,
    /// Due date of the first installment, YYYY-MM-DD, after --date.
    #[arg(long, value_name = "DATE")]
    pub first_repayment: String,
}

/// Arguments of `product-create` and `product-update`.
#[derive(Args, Clone, Debug)]
pub struct ProductDefineArgs {
    /// Product id, 1 to 32 characters of A-Z a-z 0-9 . _ - (e.g. GENERAL).
    pub product_id: String,
    /// Date from which loans disbursed use this version, YYYY-MM-DD, not in
    /// the future [default: today].
    #[arg(long, value_name = "DATE")]
    pub effective_from: Option<String>,
    #[command(flatten)]
    pub rules: ProductRulesArgs,
}

/// Help heading of the product rules about amounts and rates.
const LIMITS: &str = "Limits";
/// Help heading of the product rules about the schedule.
const SCHEDULE: &str = "Schedule";
/// Help heading of the product rules about rounding.
const ROUNDING: &str = "Rounding";
/// Help heading of the product rules about savings, arrears and payments.
const SAVINGS_ARREARS: &str = "Savings, arrears and payments";
/// Help heading of the product rules about fees and tranches.
const FEES_TRANCHES: &str = "Fees and tranches";

/// A product's rules. `product-create` needs --name, --principal-min,
/// --principal-max, a rate, --method, --frequency and installments; the rest
/// have the defaults shown. `product-update` starts from the latest version
/// and changes only what is given.
#[derive(Args, Clone, Debug)]
pub struct ProductRulesArgs {
    /// Display name, 1 to 200 characters, e.g. "General loan".
    #[arg(long, help_heading = LIMITS)]
    pub name: Option<String>,
    /// ISO 4217 currency of its loans [default: VND].
    #[arg(long, help_heading = LIMITS)]
    pub currency: Option<String>,
    /// Smallest principal of a loan (all its tranches), e.g. 1000000.
    #[arg(long, value_name = "AMOUNT", help_heading = LIMITS)]
    pub principal_min: Option<String>,
    /// Largest principal of a loan (all its tranches), e.g. 50000000.
    #[arg(long, value_name = "AMOUNT", help_heading = LIMITS)]
    pub principal_max: Option<String>,
    /// Single annual interest rate in percent, e.g. 24 (sets --rate-min and --rate-max).
    #[arg(long, value_name = "PERCENT", conflicts_with_all = ["rate_min", "rate_max"],
          help_heading = LIMITS)]
    pub rate: Option<String>,
    /// Lowest annual interest rate in percent.
    #[arg(long, value_name = "PERCENT", help_heading = LIMITS)]
    pub rate_min: Option<String>,
    /// Highest annual interest rate in percent.
    #[arg(long, value_name = "PERCENT", help_heading = LIMITS)]
    pub rate_max: Option<String>,
    /// Flat or declining balance.
    #[arg(long, value_enum, help_heading = SCHEDULE)]
    pub method: Option<MethodArg>,
    /// How a declining-balance loan repays principal [default: equal-installments].
    #[arg(long, value_enum, help_heading = SCHEDULE)]
    pub amortization: Option<AmortizationArg>,
    /// How each period's interest is counted [default: per-period].
    #[arg(long, value_enum, help_heading = SCHEDULE)]
    pub interest_period: Option<InterestPeriodArg>,
    /// Rate the equal installment is computed from [default: nominal].
    #[arg(long, value_enum, help_heading = SCHEDULE)]
    pub installment_basis: Option<InstallmentBasisArg>,
    /// How often installments fall due.
    #[arg(long, value_enum, help_heading = SCHEDULE)]
    pub frequency: Option<FrequencyArg>,
    /// Single number of installments, 1 to 520 (sets min, max and default).
    #[arg(long, value_name = "N", help_heading = SCHEDULE,
          conflicts_with_all = ["installments_min", "installments_max", "installments_default"])]
    pub installments: Option<u32>,
    /// Fewest installments a loan may have, 1 to 520.
    #[arg(long, value_name = "N", help_heading = SCHEDULE)]
    pub installments_min: Option<u32>,
    /// Most installments a loan may have [default: --installments-min].
    #[arg(long, value_name = "N", help_heading = SCHEDULE)]
    pub installments_max: Option<u32>,
    /// Installments of a loan that names none [default: --installments-min].
    #[arg(long, value_name = "N", help_heading = SCHEDULE)]
    pub installments_default: Option<u32>,
    /// Installments at the start that repay no principal [default: 0].
    #[arg(long, value_name = "N", help_heading = SCHEDULE)]
    pub grace_principal: Option<u32>,
    /// Installments at the start that collect no interest (deferred to the next) [default: 0].
    #[arg(long, value_name = "N", help_heading = SCHEDULE)]
    pub grace_interest: Option<u32>,
    /// Decimal places installments are rounded to [default: the currency's].
    #[arg(long, value_name = "N", help_heading = ROUNDING)]
    pub rounding_places: Option<u32>,
    /// Round installments to a multiple of this, e.g. 1000 [default: one unit of --rounding-places].
    #[arg(long, value_name = "MULTIPLE", help_heading = ROUNDING)]
    pub rounding: Option<String>,
    /// How installments are rounded [default: half-even].
    #[arg(long, value_enum, help_heading = ROUNDING)]
    pub rounding_mode: Option<RoundingModeArg>,
    /// Compulsory savings: this percent of the outstanding principal, e.g. 5 [default: none].
    #[arg(long, value_name = "P", help_heading = SAVINGS_ARREARS,
          conflicts_with_all = ["compulsory_per_installment", "no_compulsory"])]
    pub compulsory_percent: Option<String>,
    /// Compulsory savings: a fixed deposit with every installment, e.g. 20000.
    #[arg(long, value_name = "AMOUNT", help_heading = SAVINGS_ARREARS,
          conflicts_with = "no_compulsory")]
    pub compulsory_per_installment: Option<String>,
    /// No compulsory savings (product-update: drop the rule).
    #[arg(long, help_heading = SAVINGS_ARREARS)]
    pub no_compulsory: bool,
    /// Days an installment may be late before the loan is in arrears [default: 0].
    #[arg(long, value_name = "DAYS", help_heading = SAVINGS_ARREARS)]
    pub tolerance_days: Option<u32>,
    /// Overdue amount up to which the loan is not in arrears [default: 0].
    #[arg(long, value_name = "AMOUNT", help_heading = SAVINGS_ARREARS)]
    pub tolerance_amount: Option<String>,
    /// Order in which a payment settles an installment, all four once each
    /// [default: penalties,fees,interest,principal].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PARTS",
          help_heading = SAVINGS_ARREARS)]
    pub allocation: Option<Vec<AllocationArg>>,
    /// A fee on each disbursement (repeatable): CODE:AMOUNT[%], then optionally
    /// :WHEN, WHEN being at-disbursement (the default) or with-first-installment; e.g.
    /// disbursement:1% or card:20000:with-first-installment.
    #[arg(long, value_name = "FEE", value_parser = parse_fee, help_heading = FEES_TRANCHES,
          conflicts_with = "no_fees")]
    pub fee: Vec<FeeArg>,
    /// No fees (product-update: drop them all).
    #[arg(long, help_heading = FEES_TRANCHES)]
    pub no_fees: bool,
    /// Most disbursements (tranches) a loan may have, 1 to 10 [default: 1].
    #[arg(long, value_name = "N", help_heading = FEES_TRANCHES)]
    pub tranches: Option<u32>,
}

/// How a declining-balance loan repays principal.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AmortizationArg {
    /// Equal installments (an annuity).
    EqualInstallments,
    /// Equal principal parts; installments shrink with the interest.
    EqualPrincipal,
}

impl From<AmortizationArg> for pb::Amortization {
    fn from(value: AmortizationArg) -> Self {
        match value {
            AmortizationArg::EqualInstallments => pb::Amortization::EqualInstallments,
            AmortizationArg::EqualPrincipal => pb::Amortization::EqualPrincipal,
        }
    }
}

/// How each period's interest is counted.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum InterestPeriodArg {
    /// The annual rate over the periods in a year (52, 26 or 12).
    PerPeriod,
    /// From the period's actual days: rate × days / 365.
    #[value(name = "actual-365")]
    Actual365,
}

impl From<InterestPeriodArg> for pb::InterestPeriod {
    fn from(value: InterestPeriodArg) -> Self {
        match value {
            InterestPeriodArg::PerPeriod => pb::InterestPeriod::PerPeriod,
            InterestPeriodArg::Actual365 => pb::InterestPeriod::Actual365,
        }
    }
}

/// Which rate the equal installment of a declining-balance loan is computed from.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum InstallmentBasisArg {
    /// The nominal period rate (annual rate / periods per year).
    Nominal,
    /// Each period's own day-based rate, so the last installment equals the others.
    Actual,
}

impl From<InstallmentBasisArg> for pb::InstallmentBasis {
    fn from(value: InstallmentBasisArg) -> Self {
        match value {
            InstallmentBasisArg::Nominal => pb::InstallmentBasis::NominalPeriodRate,
            InstallmentBasisArg::Actual => pb::InstallmentBasis::ActualPeriodRates,
        }
    }
}

/// How an installment is rounded to the rounding multiple.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoundingModeArg {
    /// To the nearest; a tie goes to the even multiple.
    HalfEven,
    /// To the nearest; a tie goes away from zero.
    HalfUp,
    /// Towards zero.
    Down,
    /// Away from zero.
    Up,
}

impl From<RoundingModeArg> for pb::RoundingMode {
    fn from(value: RoundingModeArg) -> Self {
        match value {
            RoundingModeArg::HalfEven => pb::RoundingMode::HalfEven,
            RoundingModeArg::HalfUp => pb::RoundingMode::HalfUp,
            RoundingModeArg::Down => pb::RoundingMode::Down,
            RoundingModeArg::Up => pb::RoundingMode::Up,
        }
    }
}

/// One part of what a borrower owes, in a payment's allocation order.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AllocationArg {
    /// Late-payment penalties.
    Penalties,
    /// Fees.
    Fees,
    /// Interest.
    Interest,
    /// Principal.
    Principal,
}

impl From<AllocationArg> for pb::AllocationPart {
    fn from(value: AllocationArg) -> Self {
        match value {
            AllocationArg::Penalties => pb::AllocationPart::Penalties,
            AllocationArg::Fees => pb::AllocationPart::Fees,
            AllocationArg::Interest => pb::AllocationPart::Interest,
            AllocationArg::Principal => pb::AllocationPart::Principal,
        }
    }
}

/// A fee as given on the command line: `CODE:AMOUNT[%][:COLLECTION]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeeArg(pub pb::Fee);

/// Parses `CODE:AMOUNT[%][:at-disbursement|with-first-installment]`.
fn parse_fee(text: &str) -> Result<FeeArg, String> {
    let mut parts = text.split(':');
    let (code, amount) = match (parts.next(), parts.next()) {
        (Some(code), Some(amount)) if !code.is_empty() && !amount.is_empty() => (code, amount),
        _ => return Err("expected CODE:AMOUNT[%][:COLLECTION], e.g. disbursement:1%".into()),
    };
    let collection = match parts.next() {
        None | Some("at-disbursement") => pb::FeeCollection::AtDisbursement,
        Some("with-first-installment") => pb::FeeCollection::WithFirstInstallment,
        Some(other) => {
            return Err(format!(
                "collection {other:?}: expected at-disbursement or with-first-installment"
            ));
        }
    };
    if parts.next().is_some() {
        return Err("too many ':'; expected CODE:AMOUNT[%][:COLLECTION]".into());
    }
    let amount = match amount.strip_suffix('%') {
        Some(percent) if !percent.is_empty() => {
            pb::fee::Amount::PercentOfPrincipal(percent.to_owned())
        }
        Some(_) => return Err("a percent needs a number before the %".into()),
        None => pb::fee::Amount::Fixed(amount.to_owned()),
    };
    Ok(FeeArg(pb::Fee {
        code: code.to_owned(),
        amount: Some(amount),
        collection: collection as i32,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fees() {
        let fee = parse_fee("disbursement:1%").expect("a percent fee").0;
        assert_eq!(fee.code, "disbursement");
        assert_eq!(
            fee.amount,
            Some(pb::fee::Amount::PercentOfPrincipal("1".into()))
        );
        assert_eq!(fee.collection(), pb::FeeCollection::AtDisbursement);
        let fee = parse_fee("card:20000:with-first-installment")
            .expect("a fixed fee")
            .0;
        assert_eq!(fee.amount, Some(pb::fee::Amount::Fixed("20000".into())));
        assert_eq!(fee.collection(), pb::FeeCollection::WithFirstInstallment);
        for bad in [
            "card",
            ":1%",
            "card:",
            "card:%",
            "card:1:later",
            "a:1:at-disbursement:x",
        ] {
            assert!(parse_fee(bad).is_err(), "{bad}");
        }
    }
}
