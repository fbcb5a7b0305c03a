"""What a value is in the generated C: the struct member kind and size of
a field as a planned event produces it."""

from kerntrace.core.model import CONTEXT_FIELDS, KSTACK, STR

from .layout import S64, STRING, U64

COMM_LEN = 16          # TASK_COMM_LEN


def src_kind(pe, name):
    """(kind, size) of field `name` as event pe produces it."""
    if name in CONTEXT_FIELDS:
        return (STRING, COMM_LEN) if CONTEXT_FIELDS[name] == STR else (U64, 8)
    if name == KSTACK:
        return S64, 8           # the stack's id in the stack map (< 0: not taken)
    fs = pe.fields[name]
    if fs.is_string:
        return STRING, fs.size
    return (S64 if fs.signed else U64), 8


def merge(kinds):
    """One member kind for a value several sources produce."""
    if any(k == STRING for k, _s in kinds):
        return STRING, max(s for _k, s in kinds)
    return (S64 if any(k == S64 for k, _s in kinds) else U64), 8
