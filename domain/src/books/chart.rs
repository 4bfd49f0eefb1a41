//! The chart of accounts: the general-ledger code and name of each line an
//! institution reports. The default follows the usual chart of a
//! microfinance institution (1 assets, 2 liabilities, 3 equity, 4 income,
//! 5 expenses); an institution gives its own codes in a TOML file
//! (`serve --chart FILE`), line by line, and keeps the default for the
//! lines it does not name.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Line;

/// A line's code and name in the institution's chart.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlAccount {
    /// General-ledger code, e.g. `1011`.
    pub code: String,
    /// Name, e.g. `Cash on hand and in banks`.
    pub name: String,
}

/// Codes and names by line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chart {
    /// By [`Line::key`]; `fee-income` is the default of every fee line.
    lines: BTreeMap<String, GlAccount>,
}

/// The usual MFI chart: key, code, name.
const DEFAULT: [(&str, &str, &str); 14] = [
    ("cash", "1011", "Cash on hand and in banks"),
    ("loan-portfolio", "1311", "Gross loan portfolio"),
    (
        "interest-receivable",
        "1351",
        "Interest receivable on loans",
    ),
    ("loan-loss-allowance", "1391", "Allowance for loan losses"),
    ("savings-compulsory", "2111", "Compulsory savings"),
    ("savings-voluntary", "2121", "Voluntary savings"),
    ("head-office-funding", "2311", "Funding from head office"),
    ("capital", "3111", "Paid-in capital and donated equity"),
    ("retained-earnings", "3211", "Retained earnings"),
    ("interest-income", "4111", "Interest income on loans"),
    ("fee-income", "4211", "Fee income"),
    ("recoveries", "4311", "Recoveries of loans written off"),
    ("interest-expense", "5111", "Interest expense on savings"),
    ("loan-loss", "5311", "Loan-loss expense and write-offs"),
];

/// What a chart file holds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChartFile {
    lines: BTreeMap<String, GlAccount>,
}

impl Default for Chart {
    fn default() -> Chart {
        Chart {
            lines: DEFAULT
                .iter()
                .map(|(key, code, name)| {
                    (
                        (*key).to_owned(),
                        GlAccount {
                            code: (*code).to_owned(),
                            name: (*name).to_owned(),
                        },
                    )
                })
                .collect(),
        }
    }
}

impl Chart {
    /// The default chart with the lines of a TOML chart file in place of
    /// its own: `[lines]` then `cash = { code = "1011", name = "Cash" }`,
    /// one key per line (`fee-income/FEE` for one fee).
    pub fn from_toml(text: &str) -> Result<Chart, String> {
        let file: ChartFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut chart = Chart::default();
        for (key, account) in file.lines {
            Line::parse(&format!("lines.{key}"), &key).map_err(|e| e.to_string())?;
            if account.code.trim().is_empty() {
                return Err(format!("lines.{key}.code: is empty"));
            }
            chart.lines.insert(key, account);
        }
        Ok(chart)
    }

    /// The code and name of `line`. A fee line the chart does not name
    /// takes the fee-income code with the fee's code after a dot.
    pub fn account(&self, line: &Line) -> GlAccount {
        if let Some(account) = self.lines.get(&line.key()) {
            return account.clone();
        }
        match (line, self.lines.get("fee-income")) {
            (Line::FeeIncome(fee), Some(base)) => GlAccount {
                code: format!("{}.{fee}", base.code),
                name: format!("{}: {fee}", base.name),
            },
            _ => GlAccount {
                code: line.key(),
                name: line.key(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::FeeCode;

    #[test]
    fn the_default_chart_names_every_line() {
        let chart = Chart::default();
        for line in Line::FIXED {
            assert_ne!(chart.account(&line).code, line.key(), "{line}");
        }
        let fee = Line::FeeIncome(FeeCode::parse("fee", "disbursement").unwrap());
        assert_eq!(chart.account(&fee).code, "4211.disbursement");
    }

    #[test]
    fn a_chart_file_replaces_the_lines_it_names() {
        let chart = Chart::from_toml(
            "[lines]\ncash = { code = \"101\", name = \"Tiền mặt\" }\n\"fee-income/disbursement\" = { code = \"511\", name = \"Phí giải ngân\" }\n",
        )
        .unwrap();
        assert_eq!(chart.account(&Line::Cash).code, "101");
        assert_eq!(chart.account(&Line::Cash).name, "Tiền mặt");
        assert_eq!(chart.account(&Line::LoanPortfolio).code, "1311");
        let fee = Line::FeeIncome(FeeCode::parse("fee", "disbursement").unwrap());
        assert_eq!(chart.account(&fee).code, "511");
        let error =
            Chart::from_toml("[lines]\nbank = { code = \"1\", name = \"x\" }\n").unwrap_err();
        assert!(
            error.contains("lines.bank") && error.contains("not a line"),
            "{error}"
        );
        let error = Chart::from_toml("[lines]\ncash = { code = \"1\" }\n").unwrap_err();
        assert!(error.contains("name"), "{error}");
    }
}
