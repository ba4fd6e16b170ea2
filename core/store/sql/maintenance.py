"""The single maintenance row (id = 1) every replica reads."""

GET = "SELECT active, message, resume_at FROM maintenance WHERE id = 1"

SET = """
UPDATE maintenance SET active = true, message = $1, resume_at = $2, updated_at = now()
WHERE id = 1
"""

CLEAR = """
UPDATE maintenance SET active = false, message = '', resume_at = NULL, updated_at = now()
WHERE id = 1
"""
