"""identity: users, password hashes (argon2), roles, refresh tokens; signs access tokens."""
