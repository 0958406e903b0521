"""Local fake HTTP servers of the vendors the product talks to (real HTTP, no mocks)."""
