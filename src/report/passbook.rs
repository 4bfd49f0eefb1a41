//! A member's passbook: an account's statement as a printable HTML page,
//! in Vietnamese or English. The member keeps it on paper, so the page is
//! plain black on white, A5 or A4, with the branch, the account, the
//! period, the opening balance, one line per movement with the running
//! balance, and the closing balance. Rendering is pure: no I/O.

use super::html::escape;
use crate::pb;

/// Language of the page.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    /// Tiếng Việt.
    Vi,
    /// English.
    En,
}

/// The words of the page in one language.
struct Words {
    lang: &'static str,
    savings_title: &'static str,
    loan_title: &'static str,
    other_title: &'static str,
    account: &'static str,
    branch: &'static str,
    period: &'static str,
    to: &'static str,
    opening: &'static str,
    closing: &'static str,
    date: &'static str,
    entry: &'static str,
    what: &'static str,
    balance: &'static str,
    reversed: &'static str,
    as_of: &'static str,
    /// Columns (debit, credit) of a savings account, a loan, any other.
    savings_columns: (&'static str, &'static str),
    loan_columns: (&'static str, &'static str),
    other_columns: (&'static str, &'static str),
    /// Thousands separator.
    group: char,
    decimal: char,
}

const VI: Words = Words {
    lang: "vi",
    savings_title: "Sổ tiết kiệm",
    loan_title: "Sổ theo dõi khoản vay",
    other_title: "Sao kê tài khoản",
    account: "Tài khoản",
    branch: "Chi nhánh",
    period: "Kỳ",
    to: "đến",
    opening: "Số dư đầu kỳ",
    closing: "Số dư cuối kỳ",
    date: "Ngày",
    entry: "Bút toán",
    what: "Nội dung",
    balance: "Số dư",
    reversed: "đã hủy bởi bút toán",
    as_of: "Theo sổ cái đến bút toán",
    savings_columns: ("Rút ra", "Gửi vào"),
    loan_columns: ("Giải ngân", "Đã trả"),
    other_columns: ("Nợ", "Có"),
    group: '.',
    decimal: ',',
};

const EN: Words = Words {
    lang: "en",
    savings_title: "Savings passbook",
    loan_title: "Loan passbook",
    other_title: "Account statement",
    account: "Account",
    branch: "Branch",
    period: "Period",
    to: "to",
    opening: "Opening balance",
    closing: "Closing balance",
    date: "Date",
    entry: "Entry",
    what: "Description",
    balance: "Balance",
    reversed: "reversed by entry",
    as_of: "As the ledger stood at entry",
    savings_columns: ("Paid out", "Paid in"),
    loan_columns: ("Disbursed", "Repaid"),
    other_columns: ("Debit", "Credit"),
    group: ',',
    decimal: '.',
};

/// What an entry was, in the member's words.
fn describe(command: &str, language: Language) -> &str {
    let (vi, en) = match command {
        "deposit_savings" => ("Gửi tiết kiệm", "Deposit"),
        "withdraw_savings" => ("Rút tiết kiệm", "Withdrawal"),
        "record_collection_sheet" => ("Nộp tại buổi họp cụm", "Paid at the center meeting"),
        "record_repayment" => ("Trả nợ", "Repayment"),
        "disburse_loan" => ("Giải ngân", "Disbursement"),
        "disburse_tranche" => ("Giải ngân đợt tiếp", "Further tranche"),
        "write_off_loan" => ("Xóa nợ", "Write-off"),
        "reverse_entry" => ("Bút toán đảo", "Reversal"),
        "post_savings_interest" => ("Lãi tiết kiệm", "Savings interest"),
        "close_period" => ("Khóa sổ", "Period close"),
        other => (other, other),
    };
    match language {
        Language::Vi => vi,
        Language::En => en,
    }
}

/// An amount with the language's separators and currency, e.g. "1.250.000 VND".
fn amount(money: Option<&pb::Money>, words: &Words) -> String {
    let Some(money) = money else {
        return String::new();
    };
    let grouped = crate::domain::money::grouped(&money.amount);
    let localised: String = grouped
        .chars()
        .map(|c| match c {
            ',' => words.group,
            '.' => words.decimal,
            c => c,
        })
        .collect();
    if money.currency.is_empty() {
        localised
    } else {
        format!("{localised} {}", money.currency)
    }
}

/// An amount cell: empty when zero.
fn cell(money: Option<&pb::Money>, words: &Words) -> String {
    match money {
        Some(m) if m.amount.trim_start_matches(['0', '.']).is_empty() => String::new(),
        other => escape(&amount(other, words)),
    }
}

/// The statement as a complete, printable HTML document.
pub fn render(statement: &pb::GetAccountStatementResponse, language: Language) -> String {
    let words = match language {
        Language::Vi => &VI,
        Language::En => &EN,
    };
    let (title, (debit, credit)) = if statement.account.starts_with("savings:") {
        (words.savings_title, words.savings_columns)
    } else if statement.account.starts_with("loan:") {
        (words.loan_title, words.loan_columns)
    } else {
        (words.other_title, words.other_columns)
    };
    let mut rows = String::new();
    for m in &statement.movements {
        let mut what = escape(describe(&m.command, language));
        if m.reversed_by != 0 {
            what += &format!(
                " <span class=\"note\">({} {})</span>",
                words.reversed, m.reversed_by
            );
        }
        rows += &format!(
            "<tr><td>{date}</td><td class=\"n\">{sequence}</td><td>{what}</td><td class=\"n\">{debit}</td><td class=\"n\">{credit}</td><td class=\"n\">{balance}</td></tr>\n",
            date = escape(&m.date),
            sequence = m.sequence,
            debit = cell(m.debit.as_ref(), words),
            credit = cell(m.credit.as_ref(), words),
            balance = escape(&amount(m.balance.as_ref(), words)),
        );
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<title>{title}: {account}</title>
<style>
@page {{ size: A5 landscape; margin: 10mm; }}
body {{ font-family: "Noto Sans", "DejaVu Sans", Arial, sans-serif; color: #000; background: #fff; font-size: 11pt; margin: 1em; }}
h1 {{ font-size: 15pt; margin: 0 0 .4em; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: .1em 1em; margin: 0 0 .8em; }}
dt {{ font-weight: bold; }} dd {{ margin: 0; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 1px solid #000; padding: .2em .4em; vertical-align: top; }}
th {{ text-align: left; }}
td.n, th.n {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
tfoot td {{ font-weight: bold; }}
.note {{ font-size: 9pt; }}
footer {{ margin-top: .6em; font-size: 9pt; }}
</style>
</head>
<body>
<h1>{title}</h1>
<dl>
<dt>{account_label}</dt><dd>{account}</dd>
<dt>{branch_label}</dt><dd>{branch}</dd>
<dt>{period_label}</dt><dd>{from} {to_word} {to}</dd>
</dl>
<table>
<thead><tr><th>{date_label}</th><th class="n">{entry_label}</th><th>{what_label}</th><th class="n">{debit}</th><th class="n">{credit}</th><th class="n">{balance_label}</th></tr></thead>
<tbody>
<tr><td>{from}</td><td></td><td>{opening_label}</td><td></td><td></td><td class="n">{opening}</td></tr>
{rows}</tbody>
<tfoot><tr><td>{to}</td><td></td><td>{closing_label}</td><td></td><td></td><td class="n">{closing}</td></tr></tfoot>
</table>
<footer>{as_of_label} {sequence}</footer>
</body>
</html>
"#,
        lang = words.lang,
        account = escape(&statement.account),
        branch = escape(&statement.branch_id),
        from = escape(&statement.from),
        to = escape(&statement.to),
        to_word = words.to,
        account_label = words.account,
        branch_label = words.branch,
        period_label = words.period,
        date_label = words.date,
        entry_label = words.entry,
        what_label = words.what,
        balance_label = words.balance,
        opening_label = words.opening,
        closing_label = words.closing,
        opening = escape(&amount(statement.opening_balance.as_ref(), words)),
        closing = escape(&amount(statement.closing_balance.as_ref(), words)),
        as_of_label = words.as_of,
        sequence = statement.as_of_sequence,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vnd(amount: &str) -> Option<pb::Money> {
        Some(pb::Money {
            amount: amount.into(),
            currency: "VND".into(),
        })
    }

    fn statement() -> pb::GetAccountStatementResponse {
        pb::GetAccountStatementResponse {
            account: "savings:TB-0001/V1".into(),
            kind: pb::AccountKind::Liability as i32,
            branch_id: "TB".into(),
            from: "2024-01-01".into(),
            to: "2024-01-31".into(),
            opening_balance: vnd("1000000"),
            movements: vec![
                pb::StatementMovement {
                    sequence: 7,
                    date: "2024-01-05".into(),
                    command: "deposit_savings".into(),
                    request_id: "r7".into(),
                    debit: vnd("0"),
                    credit: vnd("250000"),
                    balance: vnd("1250000"),
                    reversed_by: 0,
                },
                pb::StatementMovement {
                    sequence: 9,
                    date: "2024-01-20".into(),
                    command: "withdraw_savings".into(),
                    request_id: "<r9>".into(),
                    debit: vnd("50000"),
                    credit: vnd("0"),
                    balance: vnd("1200000"),
                    reversed_by: 12,
                },
            ],
            closing_balance: vnd("1200000"),
            as_of_sequence: 15,
        }
    }

    #[test]
    fn a_passbook_in_vietnamese_shows_every_movement_and_the_balances() {
        let html = render(&statement(), Language::Vi);
        assert!(html.contains("<html lang=\"vi\">"));
        assert!(html.contains("Sổ tiết kiệm"));
        assert!(html.contains("Số dư đầu kỳ"));
        assert!(
            html.contains("1.000.000 VND"),
            "opening balance, Vietnamese separators"
        );
        assert!(html.contains("Gửi tiết kiệm"));
        assert!(html.contains("1.250.000 VND"));
        assert!(html.contains("Rút tiết kiệm"));
        assert!(html.contains("đã hủy bởi bút toán 12"));
        assert!(html.contains("Số dư cuối kỳ"));
        assert!(html.contains("1.200.000 VND"));
        // A zero side is left blank, not printed as 0.
        assert!(!html.contains(">0 VND<"));
    }

    #[test]
    fn a_passbook_in_english_uses_english_words_and_separators() {
        let html = render(&statement(), Language::En);
        assert!(html.contains("<html lang=\"en\">"));
        assert!(html.contains("Savings passbook"));
        assert!(html.contains("Paid in") && html.contains("Paid out"));
        assert!(html.contains("1,250,000 VND"));
        assert!(html.contains("Withdrawal"));
        assert!(html.contains("reversed by entry 12"));
    }
}
