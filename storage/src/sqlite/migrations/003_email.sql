-- Accounts by email (seed 001), unique and stored lower-case. An account
-- with an email and no phone keeps a placeholder in the phone column,
-- which 001 made NOT NULL UNIQUE: '@' and its email, never a valid phone
-- number, read back as no phone.
ALTER TABLE users ADD COLUMN email TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS users_email ON users (email);
