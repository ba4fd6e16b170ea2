-- Bookings that are right: the venue's local wall time and zone beside the UTC instant,
-- an index for a cancellation's match, and updated_at kept by the database on every change.
ALTER TABLE bookings
    ADD COLUMN booking_local_time timestamp,  -- the wall time at the venue, as agreed
    ADD COLUMN venue_timezone     text;       -- the IANA zone it was read in (booking_date = UTC)

CREATE INDEX bookings_customer_phone ON bookings (customer_id, target_phone)
    WHERE status IN ('active', 'pending_user_confirm');

CREATE FUNCTION bookings_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER bookings_touch BEFORE UPDATE ON bookings
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION bookings_touch();
