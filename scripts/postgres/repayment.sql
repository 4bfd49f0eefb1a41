-- pgbench script: one repayment command of the ledger, as one transaction.
-- Variables: :client_id (pgbench), :run (-D, a per-run nonce), :n (-D n=0,
-- then a per-client counter: pgbench keeps a client's variables between
-- its transactions), so every request id is unique.
-- Account names are written 'cash:' || 'TB': pgbench takes ':name' as a
-- variable even inside a string literal, but not ':' followed by a quote.
-- The planner folds the concatenation into a constant.
\set n :n + 1
\set loan random(1, 1000)
\set principal random(100, 400) * 1000
\set interest random(10, 60) * 1000
\set amount :principal + :interest
BEGIN;
INSERT INTO entries (effective_date, recorded_at, branch, actor, kind, body)
VALUES (current_date, now(), 'TB', 'pgbench-' || CAST(:client_id AS text), 'repayment',
        jsonb_build_object('loan', 'TB-' || lpad(CAST(:loan AS text), 4, '0') || '/L1',
                           'amount', CAST(:amount AS numeric),
                           'principal', CAST(:principal AS numeric),
                           'interest', CAST(:interest AS numeric)));
INSERT INTO requests (request_id, entry_id)
VALUES (CAST(:run AS text) || '-' || CAST(:client_id AS text) || '-' || CAST(:n AS text),
        currval('entries_id_seq'));
INSERT INTO postings (entry_id, line, account, side, amount) VALUES
    (currval('entries_id_seq'), 1, 'cash:' || 'TB', 'D', CAST(:amount AS numeric)),
    (currval('entries_id_seq'), 2, 'loan:' || 'TB-' || lpad(CAST(:loan AS text), 4, '0') || '/L1', 'C', CAST(:principal AS numeric)),
    (currval('entries_id_seq'), 3, 'interest-income:' || 'TB', 'C', CAST(:interest AS numeric));
UPDATE balances SET credits = credits + CAST(:principal AS numeric)
 WHERE account = 'loan:' || 'TB-' || lpad(CAST(:loan AS text), 4, '0') || '/L1';
UPDATE balances SET debits = debits + CAST(:amount AS numeric) WHERE account = 'cash:' || 'TB';
UPDATE balances SET credits = credits + CAST(:interest AS numeric) WHERE account = 'interest-income:' || 'TB';
COMMIT;
