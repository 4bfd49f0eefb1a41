//! The branch year-end report as HTML: first the document itself (loads
//! nothing, four charts with one point per figure, the comparison table,
//! escaping, an empty year), then the same document as headless Chromium
//! parses, lays out and screenshots it, through `scripts/chromium-screenshot`.
//!
//! The fixture is TYM's Thái Bình branch, 2023 against 2022. Its months add
//! up to the year (2,175 loans, 71,500,000,000 VND disbursed, 68,912,400,000
//! collected), and so do its three products. The table's expected changes
//! were worked out by hand: 2,175 − 1,849 = 326 loans and 326 / 1,849 =
//! 17.63 %; PAR30 1.23 % − 0.83 % = 0.40 pp; borrowers saving 5,102 / 5,318
//! = 95.94 % against 4,702 / 4,961 = 94.78 %, a change of 1.16 pp
//! (changes are of the percentages as shown; the exact one is 1.159 pp).
//!
//! Its statements add up as well. At 31 December 2023: assets 7,514,150,000
//! cash + 48,730,000,000 portfolio + 412,350,000 interest receivable −
//! 487,300,000 allowance = 56,169,200,000 = 22,400,000,000 savings +
//! 24,500,000,000 retained earnings + 9,269,200,000 result of 2023 (not
//! yet carried); at 31 December 2022 (closed): 2,512,800,000 +
//! 41,900,000,000 + 356,200,000 − 419,000,000 = 44,350,000,000 =
//! 19,850,000,000 + 24,500,000,000. The 2023 result is income
//! 10,573,000,000 less expenses 1,303,800,000 = 9,269,200,000 (2022:
//! 8,712,700,000 − 1,198,200,000 = 7,514,500,000).

use crate::common;

use common::chromium::{PAGE_ERRORS, open_in, open_in_chromium};

use chrono::NaiveDate;
use mfi_ledger::report::{
    Amounts, BalanceSheet, BranchReport, IncomeStatement, MonthFigures, ProductFigures,
    StatementLine, YearFigures, render_html, render_table,
};
use rust_decimal::Decimal;

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn year_2023() -> YearFigures {
    YearFigures {
        loans_disbursed: 2175,
        amount_disbursed: dec("71500000000"),
        average_loan: dec("32873563"),
        repayments_collected: dec("68912400000"),
        savings_balance: dec("22400000000"),
        borrowers: 5318,
        borrowers_saving: 5102,
        gross_portfolio: dec("48730000000"),
        par30: dec("0.0123"),
        write_offs: dec("96500000"),
    }
}

fn year_2022() -> YearFigures {
    YearFigures {
        loans_disbursed: 1849,
        amount_disbursed: dec("58320000000"),
        average_loan: dec("31541374"),
        repayments_collected: dec("55870000000"),
        savings_balance: dec("19850000000"),
        borrowers: 4961,
        borrowers_saving: 4702,
        gross_portfolio: dec("41900000000"),
        par30: dec("0.0083"),
        write_offs: dec("121000000"),
    }
}

/// January to December 2023: loans, disbursed, collected, savings at month
/// end, PAR30 at month end.
const MONTHS_2023: [(u64, &str, &str, &str, &str); 12] = [
    (142, "4620500000", "5310000000", "20010000000", "0.0085"),
    (158, "5209500000", "5020000000", "20180000000", "0.0091"),
    (196, "6480000000", "5640000000", "20420000000", "0.0097"),
    (181, "5930000000", "5590000000", "20560000000", "0.0102"),
    (177, "5790000000", "5720000000", "20790000000", "0.0110"),
    (189, "6230000000", "5810000000", "20950000000", "0.0118"),
    (172, "5640000000", "5760000000", "21130000000", "0.0125"),
    (185, "6080000000", "5880000000", "21340000000", "0.0131"),
    (193, "6350000000", "5910000000", "21580000000", "0.0128"),
    (178, "5860000000", "5950000000", "21790000000", "0.0126"),
    (196, "6450000000", "6020000000", "22060000000", "0.0124"),
    (208, "6860000000", "6302400000", "22400000000", "0.0123"),
];

fn line(code: &str, name: &str, key: &str, amount: &str, previous: &str) -> StatementLine {
    StatementLine {
        gl_code: code.to_owned(),
        gl_name: name.to_owned(),
        line: key.to_owned(),
        amount: dec(amount),
        previous_amount: dec(previous),
    }
}

fn amounts(amount: &str, previous: &str) -> Amounts {
    Amounts {
        amount: dec(amount),
        previous_amount: dec(previous),
    }
}

fn day(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).unwrap()
}

/// The balance sheet at 31 December 2023 beside 31 December 2022, in the
/// default chart's codes.
fn balance_sheet_2023() -> BalanceSheet {
    BalanceSheet {
        date: day(2023, 12, 31),
        previous_date: day(2022, 12, 31),
        assets: vec![
            line(
                "1011",
                "Cash on hand and in banks",
                "cash",
                "7514150000",
                "2512800000",
            ),
            line(
                "1311",
                "Gross loan portfolio",
                "loan-portfolio",
                "48730000000",
                "41900000000",
            ),
            line(
                "1351",
                "Interest receivable on loans",
                "interest-receivable",
                "412350000",
                "356200000",
            ),
            line(
                "1391",
                "Allowance for loan losses",
                "loan-loss-allowance",
                "-487300000",
                "-419000000",
            ),
        ],
        liabilities: vec![
            line(
                "2111",
                "Compulsory savings",
                "savings-compulsory",
                "9850000000",
                "8910000000",
            ),
            line(
                "2121",
                "Voluntary savings",
                "savings-voluntary",
                "12550000000",
                "10940000000",
            ),
        ],
        equity: vec![
            line(
                "3211",
                "Retained earnings",
                "retained-earnings",
                "24500000000",
                "24500000000",
            ),
            line(
                "",
                "Result not yet carried into retained earnings",
                "result",
                "9269200000",
                "0",
            ),
        ],
        total_assets: amounts("56169200000", "44350000000"),
        total_liabilities_and_equity: amounts("56169200000", "44350000000"),
    }
}

/// The income statement of 2023 beside 2022.
fn income_statement_2023() -> IncomeStatement {
    IncomeStatement {
        from: day(2023, 1, 1),
        to: day(2023, 12, 31),
        previous_from: day(2022, 1, 1),
        previous_to: day(2022, 12, 31),
        income: vec![
            line(
                "4111",
                "Interest income on loans",
                "interest-income",
                "9845600000",
                "8120400000",
            ),
            line(
                "4211.disbursement",
                "Fee income: disbursement",
                "fee-income/disbursement",
                "715000000",
                "583200000",
            ),
            line(
                "4311",
                "Recoveries of loans written off",
                "recoveries",
                "12400000",
                "9100000",
            ),
        ],
        expenses: vec![
            line(
                "5111",
                "Interest expense on savings",
                "interest-expense",
                "1120000000",
                "992500000",
            ),
            line(
                "5311",
                "Loan-loss expense and write-offs",
                "loan-loss",
                "183800000",
                "205700000",
            ),
        ],
        result: amounts("9269200000", "7514500000"),
    }
}

fn thai_binh_2023() -> BranchReport {
    let months = (1..)
        .zip(MONTHS_2023)
        .map(
            |(month, (loans, disbursed, collected, savings, par30))| MonthFigures {
                month,
                loans_disbursed: loans,
                amount_disbursed: dec(disbursed),
                collected: dec(collected),
                savings_balance: dec(savings),
                par30: dec(par30),
            },
        )
        .collect();
    let product = |id: &str, name: &str, loans, amount| ProductFigures {
        product_id: id.to_owned(),
        name: name.to_owned(),
        loans,
        amount: dec(amount),
    };
    BranchReport {
        branch_id: "TB01".to_owned(),
        branch_name: "TYM - Chi nhánh Thái Bình".to_owned(),
        currency: "VND".to_owned(),
        currency_decimal_places: 0,
        year: 2023,
        current: year_2023(),
        previous: year_2022(),
        months,
        by_product: vec![
            product("VPTKT", "Vay phát triển kinh tế", 1412, "52180000000"),
            product("VTD", "Vay tiêu dùng", 596, "14070000000"),
            product("VNONS", "Vay nhà ở & nước sạch", 167, "5250000000"),
        ],
        balance_sheet: balance_sheet_2023(),
        income_statement: income_statement_2023(),
        generated_at: "2024-01-02 08:30 UTC".to_owned(),
        ledger_head: "#1482230 9f2c4e1a7b3d5c60".to_owned(),
    }
}

/// The `<svg id="ID" …>…</svg>` element of a chart, in HTML source or in a
/// browser's serialization of the DOM.
fn chart<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<svg id=\"{id}\""))
        .unwrap_or_else(|| panic!("no chart {id}"));
    let end = html[start..].find("</svg>").expect("an unclosed <svg>") + start;
    &html[start..end + "</svg>".len()]
}

/// The body rows of the HTML comparison table, each as its cells' text.
fn html_table_rows(html: &str) -> Vec<Vec<String>> {
    let start = html.find("<tbody>").expect("no table body");
    let end = html.find("</tbody>").expect("no table body end");
    html[start..end]
        .split("</tr>")
        .filter(|row| row.contains("<tr>"))
        .map(|row| {
            row.replace("</th>", "</td>")
                .split("</td>")
                .map(text_of)
                .filter(|cell| !cell.is_empty())
                .collect()
        })
        .collect()
}

/// The body rows of the statement table `id`, each as its cells' text.
fn statement_rows(html: &str, id: &str) -> Vec<Vec<String>> {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id}"));
    let table = &html[start..];
    let body = table.find("<tbody>").expect("no table body");
    let end = table.find("</tbody>").expect("no table body end");
    table[body..end]
        .split("</tr>")
        .filter(|row| row.contains("<tr"))
        .map(|row| {
            row.replace("</th>", "</td>")
                .split("</td>")
                .map(text_of)
                .filter(|cell| !cell.is_empty())
                .collect()
        })
        .collect()
}

/// The text of an HTML fragment: its tags removed, trimmed.
fn text_of(fragment: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in fragment.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.trim().to_owned()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Checks that `html` (source or DOM) holds the four charts with one point
/// per figure of the fixture.
fn assert_charts(html: &str) {
    assert_eq!(count(html, "<svg"), 4, "one <svg> per chart, no other");
    let disbursements = chart(html, "chart-disbursements");
    assert_eq!(count(disbursements, "class=\"point\""), 24);
    assert_eq!(count(disbursements, "data-series=\"disbursed\""), 12);
    assert_eq!(count(disbursements, "data-series=\"collected\""), 12);
    let savings = chart(html, "chart-savings");
    assert_eq!(count(savings, "class=\"point\""), 12);
    let par30 = chart(html, "chart-par30");
    assert_eq!(count(par30, "class=\"point\""), 12);
    let products = chart(html, "chart-products");
    assert_eq!(count(products, "class=\"point\""), 3);
    for id in [
        "chart-disbursements",
        "chart-savings",
        "chart-par30",
        "chart-products",
    ] {
        assert!(
            chart(html, id).contains(&format!("<title id=\"{id}-title\">")),
            "{id} has no title"
        );
    }
}

#[test]
fn fixture_months_and_products_add_up_to_the_year() {
    let report = thai_binh_2023();
    let months = &report.months;
    let loans: u64 = months.iter().map(|m| m.loans_disbursed).sum();
    let disbursed: Decimal = months.iter().map(|m| m.amount_disbursed).sum();
    let collected: Decimal = months.iter().map(|m| m.collected).sum();
    assert_eq!(loans, report.current.loans_disbursed);
    assert_eq!(disbursed, report.current.amount_disbursed);
    assert_eq!(collected, report.current.repayments_collected);
    assert_eq!(months[11].savings_balance, report.current.savings_balance);
    assert_eq!(months[11].par30, report.current.par30);
    let product_loans: u64 = report.by_product.iter().map(|p| p.loans).sum();
    let product_amount: Decimal = report.by_product.iter().map(|p| p.amount).sum();
    assert_eq!(product_loans, report.current.loans_disbursed);
    assert_eq!(product_amount, report.current.amount_disbursed);
}

#[test]
fn fixture_statements_add_up() {
    let report = thai_binh_2023();
    let sheet = &report.balance_sheet;
    let sum = |lines: &[StatementLine]| Amounts::sum(lines).unwrap();
    assert_eq!(sum(&sheet.assets), sheet.total_assets);
    let liabilities_and_equity = sum(&sheet.liabilities)
        .checked_add(sum(&sheet.equity))
        .unwrap();
    assert_eq!(liabilities_and_equity, sheet.total_liabilities_and_equity);
    assert_eq!(sheet.total_assets, sheet.total_liabilities_and_equity);
    let statement = &report.income_statement;
    let result = sum(&statement.income)
        .checked_sub(sum(&statement.expenses))
        .unwrap();
    assert_eq!(result, statement.result);
    // The portfolio and savings are the figures of the comparison.
    assert_eq!(sheet.assets[1].amount, report.current.gross_portfolio);
    assert_eq!(
        sheet.assets[1].previous_amount,
        report.previous.gross_portfolio
    );
    assert_eq!(
        sum(&sheet.liabilities).amount,
        report.current.savings_balance
    );
    // The year's result is the equity's line not yet carried.
    assert_eq!(sheet.equity[1].amount, statement.result.amount);
}

#[test]
fn html_and_terminal_show_the_balance_sheet_and_the_income_statement() {
    let report = thai_binh_2023();
    let html = render_html(&report);
    assert!(html.contains("<h2>Balance sheet at 31 Dec 2023 against 31 Dec 2022 (VND)</h2>"));
    assert!(html.contains("<h2>Income statement 2023 against 2022 (VND)</h2>"));
    let sheet = statement_rows(&html, "balance-sheet");
    let expected_sheet: [&[&str]; 15] = [
        &["Assets"],
        &[
            "1011",
            "Cash on hand and in banks",
            "2,512,800,000",
            "7,514,150,000",
        ],
        &[
            "1311",
            "Gross loan portfolio",
            "41,900,000,000",
            "48,730,000,000",
        ],
        &[
            "1351",
            "Interest receivable on loans",
            "356,200,000",
            "412,350,000",
        ],
        &[
            "1391",
            "Allowance for loan losses",
            "-419,000,000",
            "-487,300,000",
        ],
        &["Total assets", "44,350,000,000", "56,169,200,000"],
        &["Liabilities"],
        &[
            "2111",
            "Compulsory savings",
            "8,910,000,000",
            "9,850,000,000",
        ],
        &[
            "2121",
            "Voluntary savings",
            "10,940,000,000",
            "12,550,000,000",
        ],
        &["Total liabilities", "19,850,000,000", "22,400,000,000"],
        &["Equity"],
        &[
            "3211",
            "Retained earnings",
            "24,500,000,000",
            "24,500,000,000",
        ],
        &[
            "Result not yet carried into retained earnings",
            "0",
            "9,269,200,000",
        ],
        &["Total equity", "24,500,000,000", "33,769,200,000"],
        &[
            "Total liabilities and equity",
            "44,350,000,000",
            "56,169,200,000",
        ],
    ];
    assert_eq!(sheet, expected_sheet);
    let income = statement_rows(&html, "income-statement");
    let expected_income: [&[&str]; 10] = [
        &["Income"],
        &[
            "4111",
            "Interest income on loans",
            "8,120,400,000",
            "9,845,600,000",
        ],
        &[
            "4211.disbursement",
            "Fee income: disbursement",
            "583,200,000",
            "715,000,000",
        ],
        &[
            "4311",
            "Recoveries of loans written off",
            "9,100,000",
            "12,400,000",
        ],
        &["Total income", "8,712,700,000", "10,573,000,000"],
        &["Expenses"],
        &[
            "5111",
            "Interest expense on savings",
            "992,500,000",
            "1,120,000,000",
        ],
        &[
            "5311",
            "Loan-loss expense and write-offs",
            "205,700,000",
            "183,800,000",
        ],
        &["Total expenses", "1,198,200,000", "1,303,800,000"],
        &["Result", "7,514,500,000", "9,269,200,000"],
    ];
    assert_eq!(income, expected_income);

    // The terminal prints the same rows, after the comparison.
    let text = render_table(&report);
    let terminal_rows = |title: &str| -> Vec<Vec<String>> {
        let start = text
            .find(title)
            .unwrap_or_else(|| panic!("no {title:?}\n{text}"));
        text[start..]
            .lines()
            .skip(1)
            .take_while(|line| !line.is_empty() && !line.starts_with("Figures from"))
            .filter(|line| line.starts_with('│'))
            .skip(1) // the column headings
            .map(|line| {
                line.split(['│', '┆'])
                    .map(str::trim)
                    .filter(|cell| !cell.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .collect()
    };
    assert!(text.find("Loans disbursed") < text.find("Balance sheet at"));
    assert_eq!(
        terminal_rows("Balance sheet at 31 Dec 2023 against 31 Dec 2022 (VND)\n"),
        expected_sheet,
        "{text}"
    );
    assert_eq!(
        terminal_rows("Income statement 2023 against 2022 (VND)\n"),
        expected_income,
        "{text}"
    );
}

#[test]
fn html_loads_nothing_from_outside() {
    let html = render_html(&thai_binh_2023());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<meta charset=\"utf-8\">"));
    for outside in [
        "http://", "https://", "<link", "<script", "<img", "<iframe", "<object", "<embed", "src=",
        "href=", "url(", "@import",
    ] {
        assert!(!html.contains(outside), "the report contains {outside:?}");
    }
}

#[test]
fn html_has_four_charts_with_a_point_per_figure() {
    let html = render_html(&thai_binh_2023());
    assert_charts(&html);
    // Each point holds its exact figure.
    let disbursements = chart(&html, "chart-disbursements");
    assert!(
        disbursements
            .contains("data-series=\"collected\" data-month=\"12\" data-value=\"6302400000\"")
    );
    assert!(chart(&html, "chart-par30").contains("data-month=\"8\" data-value=\"0.0131\""));
    let products = chart(&html, "chart-products");
    assert!(
        products.contains("data-product=\"VTD\" data-value=\"596\" data-amount=\"14070000000\"")
    );
    // Tens of billions are labelled in billions; PAR30 in percent.
    assert!(disbursements.contains(">8 bn</text>"));
    assert!(chart(&html, "chart-savings").contains(">25 bn</text>"));
    assert!(chart(&html, "chart-par30").contains(">1.5 %</text>"));
}

#[test]
fn html_and_terminal_tables_compare_the_two_years() {
    let report = thai_binh_2023();
    let html = render_html(&report);
    let expected = [
        ("Loans disbursed", "1,849", "2,175", "+326 (+17.63 %)"),
        (
            "Amount disbursed",
            "58,320,000,000 VND",
            "71,500,000,000 VND",
            "+13,180,000,000 VND (+22.60 %)",
        ),
        (
            "Average loan",
            "31,541,374 VND",
            "32,873,563 VND",
            "+1,332,189 VND (+4.22 %)",
        ),
        (
            "Share of borrowers saving",
            "94.78 %",
            "95.94 %",
            "+1.16 pp",
        ),
        ("Active borrowers", "4,961", "5,318", "+357 (+7.20 %)"),
        ("PAR30", "0.83 %", "1.23 %", "+0.40 pp"),
        (
            "Write-offs",
            "121,000,000 VND",
            "96,500,000 VND",
            "-24,500,000 VND (-20.25 %)",
        ),
    ];
    let rows = html_table_rows(&html);
    assert_eq!(rows.len(), 10);
    for (figure, previous, current, change) in expected {
        let row = rows
            .iter()
            .find(|row| row[0] == figure)
            .unwrap_or_else(|| panic!("no HTML row for {figure}"));
        assert_eq!(row, &[figure, previous, current, change]);
    }

    let text = render_table(&report);
    assert!(text.starts_with("TYM - Chi nhánh Thái Bình (TB01): 2023 against 2022\n"));
    for (figure, previous, current, change) in expected {
        let line = text
            .lines()
            .find(|line| line.contains(figure))
            .unwrap_or_else(|| panic!("no terminal row for {figure}\n{text}"));
        let cells: Vec<&str> = line
            .split(['│', '┆'])
            .map(str::trim)
            .filter(|cell| !cell.is_empty())
            .collect();
        assert_eq!(cells, [figure, previous, current, change], "{text}");
    }
    assert!(text.ends_with(
        "Figures from ledger head #1482230 9f2c4e1a7b3d5c60, generated 2024-01-02 08:30 UTC.\n"
    ));
}

#[test]
fn html_escapes_names() {
    let mut report = thai_binh_2023();
    report.branch_name = "TYM <Thái Bình> & \"Co\"".to_owned();
    report.by_product[0].name = "<b>Vay</b> & 'tiết kiệm'".to_owned();
    let html = render_html(&report);
    assert!(html.contains("<h1>TYM &lt;Thái Bình&gt; &amp; &quot;Co&quot;</h1>"));
    assert!(html.contains("&lt;b&gt;Vay&lt;/b&gt; &amp; &#39;tiết kiệm&#39;"));
    assert!(!html.contains("<Thái Bình>"));
    assert!(!html.contains("<b>"));
}

#[test]
fn an_empty_year_renders_without_dividing_by_zero() {
    let zero = YearFigures {
        loans_disbursed: 0,
        amount_disbursed: Decimal::ZERO,
        average_loan: Decimal::ZERO,
        repayments_collected: Decimal::ZERO,
        savings_balance: Decimal::ZERO,
        borrowers: 0,
        borrowers_saving: 0,
        gross_portfolio: Decimal::ZERO,
        par30: Decimal::ZERO,
        write_offs: Decimal::ZERO,
    };
    let mut report = thai_binh_2023();
    report.previous = zero.clone();
    report.current = zero;
    for month in &mut report.months {
        month.loans_disbursed = 0;
        month.amount_disbursed = Decimal::ZERO;
        month.collected = Decimal::ZERO;
        month.savings_balance = Decimal::ZERO;
        month.par30 = Decimal::ZERO;
    }
    report.by_product.clear();

    let html = render_html(&report);
    for bad in ["NaN", "inf\""] {
        assert!(!html.contains(bad), "the report contains {bad}");
    }
    assert_eq!(
        count(chart(&html, "chart-disbursements"), "class=\"point\""),
        24
    );
    assert_eq!(count(chart(&html, "chart-savings"), "class=\"point\""), 12);
    assert_eq!(count(chart(&html, "chart-par30"), "class=\"point\""), 12);
    let products = chart(&html, "chart-products");
    assert_eq!(count(products, "class=\"point\""), 0);
    assert!(products.contains("No loans disbursed in 2023."));
    // The axes still reach 1 (VND) and 1 %.
    assert!(chart(&html, "chart-savings").contains(">1</text>"));
    assert!(chart(&html, "chart-par30").contains(">1 %</text>"));
    let rows = html_table_rows(&html);
    assert_eq!(rows[0], ["Loans disbursed", "0", "0", "0 (n/a)"]);
    assert_eq!(
        rows[1],
        ["Amount disbursed", "0 VND", "0 VND", "0 VND (n/a)"]
    );
    assert_eq!(rows[5], ["Share of borrowers saving", "n/a", "n/a", "n/a"]);

    let text = render_table(&report);
    assert!(text.contains("0 VND (n/a)"), "{text}");
}

#[test]
fn chromium_lays_out_the_report_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let html = render_html(&thai_binh_2023());
    let Some(rendered) = open_in_chromium(
        "chromium_lays_out_the_report_without_errors",
        &html,
        dir.path(),
    ) else {
        return;
    };
    assert!(rendered.output.status.success(), "{}", rendered.describe());
    // The report has no script: the page has nothing to say on the console.
    let stderr = rendered.stderr();
    assert!(
        !stderr.contains(":CONSOLE"),
        "console messages:\n{}",
        rendered.describe()
    );

    let png = std::fs::read(&rendered.png).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 2400));
    // A blank page of that size compresses to about 14 KB.
    assert!(
        png.len() > 60_000,
        "a {} byte screenshot is too small to show the report",
        png.len()
    );

    let dom = std::fs::read_to_string(&rendered.dom).unwrap();
    assert_charts(&dom);
    assert!(dom.contains("<h1>TYM - Chi nhánh Thái Bình</h1>"));
    assert_eq!(html_table_rows(&dom), html_table_rows(&html));
    for id in ["balance-sheet", "income-statement"] {
        assert_eq!(statement_rows(&dom, id), statement_rows(&html, id));
    }
}

/// Measures, in the browser, each product name of the product chart: a
/// copy of the report gets this script (the report itself has none), which
/// writes what it found into `<body data-label-check>`.
const MEASURE_PRODUCT_NAMES: &str = r#"<script>
const svg = document.getElementById('chart-products');
const view = svg.viewBox.baseVal;
const expected = JSON.parse(document.body.dataset.names);
const labels = Array.from(svg.querySelectorAll('text[data-label]'));
const problems = [];
const squeezed = (text) => text.replace(/\s+/g, '');
labels.forEach((label, index) => {
  const id = label.dataset.label;
  const box = label.getBBox();
  if (box.x < view.x || box.y < view.y || box.x + box.width > view.x + view.width
      || box.y + box.height > view.y + view.height) {
    problems.push(`${id}: [${box.x}, ${box.x + box.width}] x [${box.y}, ${box.y + box.height}] outside the view box`);
  }
  const bar = svg.querySelector(`rect[data-product="${id}"]`);
  if (box.y + box.height > bar.y.baseVal.value) {
    problems.push(`${id}: overlaps its bar`);
  }
  const shown = Array.from(label.querySelectorAll('tspan')).map((line) => line.textContent).join('');
  if (squeezed(shown) !== squeezed(expected[index])) {
    problems.push(`${id}: shows "${shown}", not "${expected[index]}"`);
  }
});
document.body.setAttribute('data-label-check',
  problems.length ? problems.join('; ') : `ok ${labels.length}`);
</script>"#;

/// Product names are written whole, inside the chart, as the browser lays
/// them out: the simulation's housing loan (cut to "Vay cải thiện nhà ở
/// (ho…" by an earlier layout), a name that needs three lines and one with
/// no space to break at.
#[test]
fn chromium_shows_every_product_name_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut report = thai_binh_2023();
    let names = [
        "Vay cải thiện nhà ở, công trình nước sạch và vệ sinh môi trường nông thôn, \
         cho hộ nghèo và cận nghèo (general)",
        "Vaynhàởvànướcsạchnôngthônkhôngcódấucáchnàocảtrongtêndàinàyđâu",
        "Vay cải thiện nhà ở (housing)",
    ];
    for (product, name) in report.by_product.iter_mut().zip(names) {
        product.name = name.to_owned();
    }
    let html = render_html(&report);
    for name in names {
        assert!(!html.contains('…'), "a name was shortened");
        let squeezed: String = name.split_whitespace().collect();
        let products = chart(&html, "chart-products");
        assert!(
            text_of(products)
                .split_whitespace()
                .collect::<String>()
                .contains(&squeezed),
            "{name} is not whole in:\n{products}"
        );
    }
    let names_json = serde_json::to_string(&names).unwrap();
    let measured = html.replacen(
        "<body>",
        &format!(
            "<body data-names=\"{}\">",
            names_json.replace('&', "&amp;").replace('"', "&quot;")
        ),
        1,
    );
    let measured = measured.replacen("</body>", &format!("{MEASURE_PRODUCT_NAMES}</body>"), 1);
    let Some(rendered) = open_in_chromium(
        "chromium_shows_every_product_name_whole",
        &measured,
        dir.path(),
    ) else {
        return;
    };
    assert!(rendered.output.status.success(), "{}", rendered.describe());
    let dom = std::fs::read_to_string(&rendered.dom).unwrap();
    let check = dom
        .split("data-label-check=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the script wrote no result:\n{}", rendered.describe()));
    assert_eq!(check, "ok 3", "{}", rendered.describe());
}

#[test]
fn chromium_check_catches_script_errors() {
    let dir = tempfile::tempdir().unwrap();
    let html = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>broken</title></head>\
                <body><p>broken</p><script>reportNotDefined();</script></body></html>";
    let Some(rendered) = open_in_chromium("chromium_check_catches_script_errors", html, dir.path())
    else {
        return;
    };
    assert_eq!(
        rendered.output.status.code(),
        Some(PAGE_ERRORS),
        "{}",
        rendered.describe()
    );
    assert!(
        rendered
            .stderr()
            .contains("Uncaught ReferenceError: reportNotDefined is not defined"),
        "{}",
        rendered.describe()
    );
}

/// A browser check that cannot start Chromium fails under `CI=true` rather
/// than passing as a skip (it used to return early, green, in CI too);
/// outside CI it is skipped, loudly.
#[test]
fn without_chromium_the_browser_checks_fail_in_ci_and_skip_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-chromium");
    let html = "<!DOCTYPE html><html><body><p>report</p></body></html>";
    let test = "without_chromium_the_browser_checks_fail_in_ci_and_skip_elsewhere";
    let in_ci = std::panic::catch_unwind(|| open_in(test, html, dir.path(), Some(&missing), true));
    let why = in_ci.expect_err("an unavailable Chromium must fail the check in CI");
    let message = why
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_default();
    assert!(
        message.contains("Chromium is unavailable under CI=true"),
        "{message}"
    );
    assert!(open_in(test, html, dir.path(), Some(&missing), false).is_none());
}
