"""Fakes of the far side of each external boundary, shared by every test that crosses it."""
