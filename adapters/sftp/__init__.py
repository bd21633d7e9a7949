"""SFTP adapter."""
