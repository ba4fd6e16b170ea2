-- Idempotency keys (Stripe semantics), scoped to the customer.
CREATE TABLE idempotency_keys (
    customer_id text NOT NULL REFERENCES customers (customer_id),
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint bytea NOT NULL,          -- SHA-256 of operation + canonical request
    status      text NOT NULL CHECK (status IN ('running', 'done')),
    call_id     text,
    response    bytea,                   -- the first response, as serialized protobuf
    error_reason  text,                  -- or the first error, replayed as is
    error_message text,
    locked_at   timestamptz NOT NULL DEFAULT now(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (customer_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
