"""Every SQL statement core runs, as named constants: one module per aggregate.

A reader finds a table's queries in one place, and a reviewer sees the whole statement
(no f-strings, no run-time assembly): where two queries share a column list, the list is
a constant joined by plain concatenation when the module is imported. App modules use
them as `from core.store.sql import calls as sql` … `conn.fetchrow(sql.CLAIM, ...)`.
"""
