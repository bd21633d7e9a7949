"""The built-in adapters: http, sftp. Each registers through the hookbridge.adapters entry point."""
