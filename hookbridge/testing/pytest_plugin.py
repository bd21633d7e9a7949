"""pytest plugin of hookbridge: loopback server fixtures. Imports server libraries lazily."""
