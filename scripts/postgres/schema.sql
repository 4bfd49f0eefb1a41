-- Schema for the PostgreSQL peer baseline (scripts/bench-postgres).
-- The same double-entry work the ledger does for one repayment command:
-- a unique client request id, one journal entry, its postings, and the
-- running balances of the accounts it touches.

CREATE TABLE requests (
    request_id text PRIMARY KEY,          -- client request id: applied once
    entry_id   bigint NOT NULL
);

CREATE TABLE entries (
    id             bigserial PRIMARY KEY,
    effective_date date        NOT NULL,
    recorded_at    timestamptz NOT NULL,
    branch         text        NOT NULL,
    actor          text        NOT NULL,
    kind           text        NOT NULL,
    body           jsonb       NOT NULL
);

CREATE TABLE postings (
    entry_id bigint   NOT NULL REFERENCES entries (id),
    line     smallint NOT NULL,
    account  text     NOT NULL,
    side     char(1)  NOT NULL CHECK (side IN ('D', 'C')),
    amount   numeric(20, 0) NOT NULL CHECK (amount > 0),
    PRIMARY KEY (entry_id, line)
);

CREATE TABLE balances (
    account text PRIMARY KEY,
    debits  numeric(30, 0) NOT NULL DEFAULT 0,
    credits numeric(30, 0) NOT NULL DEFAULT 0
);

-- Seed: 1,000 loans of 10,000,000 VND each, disbursed from the branch's cash
-- (Dr loan, Cr cash), plus the branch's interest-income account. The seed
-- balances: sum(debits) = sum(credits).
INSERT INTO balances (account, debits, credits)
SELECT 'loan:TB-' || lpad(i::text, 4, '0') || '/L1', 10000000, 0
FROM generate_series(1, 1000) AS i;

INSERT INTO balances (account, debits, credits)
VALUES ('cash:TB', 0, 1000 * 10000000::numeric),
       ('interest-income:TB', 0, 0);

VACUUM ANALYZE;
CHECKPOINT;
