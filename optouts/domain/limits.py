"""Bounds shared by the use-cases and the API contract, in a module that imports nothing,
so the blueprints and the OpenAPI document can use them without loading the heavy side."""

#: Longest phone number input accepted, separators included.
MAX_INPUT_LENGTH = 64
#: Audit history pages: the default and the largest page a caller may ask for.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
#: An operation id as the audit trail issues it (a uuid4 in hex).
OPERATION_ID_REGEX = "[0-9a-f]{32}"
