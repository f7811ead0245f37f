-- Throttling of password and code checks (walden_core::users::throttle). State lives here, not in memory, so a
-- restart does not reset it, and it stays bounded: rows older than the longest window are pruned on every
-- write and by the maintenance worker.
--
-- One row per failed (or still undecided) check. `account` is `user:<id>` or, for a name that is no user, the
-- keyed fingerprint `login-name:<hex>` (never the typed text). `client` is an IPv4 address, an IPv6 /64
-- (`2001:db8:1:2::/64`), or `unknown`. `at` is Unix seconds.
CREATE TABLE credential_failures (
    id       INTEGER PRIMARY KEY,
    account  TEXT    NOT NULL CHECK (length(account) BETWEEN 1 AND 80),
    client   TEXT    NOT NULL CHECK (length(client) BETWEEN 1 AND 64),
    at       INTEGER NOT NULL CHECK (at > 0)
) STRICT;
CREATE INDEX credential_failures_by_account ON credential_failures (account, at);
CREATE INDEX credential_failures_by_client ON credential_failures (client, at);
CREATE INDEX credential_failures_by_age ON credential_failures (at);

-- Clients a user has fully signed in from (password and, when enrolled, code) in the last 30 days. Attempts
-- from them are exempt from the account-wide back-off, so failures sent from elsewhere cannot lock the owner
-- out (security review M1). Only a successful sign-in adds a row.
CREATE TABLE credential_known_clients (
    account  TEXT    NOT NULL CHECK (length(account) BETWEEN 1 AND 80),
    client   TEXT    NOT NULL CHECK (length(client) BETWEEN 1 AND 64),
    at       INTEGER NOT NULL CHECK (at > 0),
    PRIMARY KEY (account, client)
) STRICT;
CREATE INDEX credential_known_clients_by_age ON credential_known_clients (at);
