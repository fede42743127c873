-- A revoked token stops working at `effective_at`: at once for logout, a few seconds later for the token a
-- refresh replaced, so requests already in flight with it (other tabs, an SDK's retry) still succeed.
ALTER TABLE revoked_tokens ADD COLUMN effective_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3);
