-- Who may put a user in a group: everyone (the default), contacts, nobody.
ALTER TABLE users ADD COLUMN group_invites TEXT NOT NULL DEFAULT 'everyone';
