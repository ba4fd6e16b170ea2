-- Accounts, API keys, the credit ledger, maintenance and bookings.

CREATE TABLE customers (
    customer_id             text PRIMARY KEY,
    name                    text NOT NULL UNIQUE,
    status                  text NOT NULL DEFAULT 'active',
    quota_limit             bigint NOT NULL CHECK (quota_limit >= 0),
    -- Always = open reservations + amounts captured since period_start (see core/credits.py).
    current_usage           bigint NOT NULL DEFAULT 0 CHECK (current_usage >= 0),
    quota_period            text NOT NULL DEFAULT 'monthly',
    period_start            timestamptz NOT NULL DEFAULT date_trunc('month', now()),
    max_concurrent_calls    integer NOT NULL DEFAULT 1
                            CHECK (max_concurrent_calls BETWEEN 1 AND 100),
    ask_user_webhook_url    text,
    -- HMAC signing needs the secret itself, so it cannot be a hash; it is never returned twice.
    ask_user_webhook_secret text,
    created_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    api_key_id   text PRIMARY KEY,
    customer_id  text NOT NULL REFERENCES customers (customer_id),
    key_hash     bytea NOT NULL UNIQUE,   -- SHA-256 of the key; the key itself is never stored
    last_4       text NOT NULL,
    is_admin     boolean NOT NULL DEFAULT false,
    is_bootstrap boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX api_keys_customer ON api_keys (customer_id);

CREATE TABLE credit_reservations (
    reservation_id  text PRIMARY KEY,
    customer_id     text NOT NULL REFERENCES customers (customer_id),
    call_id         text,
    amount          bigint NOT NULL CHECK (amount > 0),
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'captured', 'released')),
    captured_amount bigint NOT NULL DEFAULT 0 CHECK (captured_amount >= 0 AND captured_amount <= amount),
    created_at      timestamptz NOT NULL DEFAULT now(),
    settled_at      timestamptz
);
CREATE INDEX credit_reservations_open ON credit_reservations (customer_id) WHERE status = 'open';
CREATE INDEX credit_reservations_call ON credit_reservations (call_id);

CREATE TABLE maintenance (
    id         integer PRIMARY KEY CHECK (id = 1),
    active     boolean NOT NULL DEFAULT false,
    message    text NOT NULL DEFAULT '',
    resume_at  timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO maintenance (id) VALUES (1);

CREATE TABLE bookings (
    booking_id          text PRIMARY KEY,
    customer_id         text NOT NULL REFERENCES customers (customer_id),
    call_id             text,
    type                text NOT NULL CHECK (type IN ('restaurant', 'doctor', 'hotel', 'other')),
    target_phone        text NOT NULL,
    venue_name          text,
    booking_date        timestamp,          -- naive UTC, as the contract says
    guests              integer,
    booking_holder_name text,
    contact_phone       text,
    details             text,
    status              text NOT NULL
                        CHECK (status IN ('active', 'pending_user_confirm', 'past', 'cancelled')),
    language            text NOT NULL,
    refusal_reason      text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bookings_customer_created ON bookings (customer_id, created_at DESC);
