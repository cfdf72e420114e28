"""Presentation only: tables, live progress and the playbook's display. Nothing here
decides what a run does."""
