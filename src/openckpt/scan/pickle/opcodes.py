"""Pickle opcodes (protocols 0-5) as CPython's ``Modules/_pickle.c`` reads them.

Only the byte values are needed: the machine decodes each argument itself, the way the C unpickler does.
"""

from __future__ import annotations

__all__ = ["CALLS", "NAMES", "VALID"]

MARK = 0x28  # (
STOP = 0x2E  # .
POP = 0x30  # 0
POP_MARK = 0x31  # 1
DUP = 0x32  # 2
FLOAT = 0x46  # F
INT = 0x49  # I
BININT = 0x4A  # J
BININT1 = 0x4B  # K
LONG = 0x4C  # L
BININT2 = 0x4D  # M
NONE = 0x4E  # N
PERSID = 0x50  # P
BINPERSID = 0x51  # Q
REDUCE = 0x52  # R
STRING = 0x53  # S
BINSTRING = 0x54  # T
SHORT_BINSTRING = 0x55  # U
UNICODE = 0x56  # V
BINUNICODE = 0x58  # X
APPEND = 0x61  # a
BUILD = 0x62  # b
GLOBAL = 0x63  # c
DICT = 0x64  # d
EMPTY_DICT = 0x7D  # }
APPENDS = 0x65  # e
GET = 0x67  # g
BINGET = 0x68  # h
INST = 0x69  # i
LONG_BINGET = 0x6A  # j
LIST = 0x6C  # l
EMPTY_LIST = 0x5D  # ]
OBJ = 0x6F  # o
PUT = 0x70  # p
BINPUT = 0x71  # q
LONG_BINPUT = 0x72  # r
SETITEM = 0x73  # s
TUPLE = 0x74  # t
EMPTY_TUPLE = 0x29  # )
SETITEMS = 0x75  # u
BINFLOAT = 0x47  # G
# protocol 2
PROTO = 0x80
NEWOBJ = 0x81
EXT1 = 0x82
EXT2 = 0x83
EXT4 = 0x84
TUPLE1 = 0x85
TUPLE2 = 0x86
TUPLE3 = 0x87
NEWTRUE = 0x88
NEWFALSE = 0x89
LONG1 = 0x8A
LONG4 = 0x8B
# protocol 3
BINBYTES = 0x42  # B
SHORT_BINBYTES = 0x43  # C
# protocol 4
SHORT_BINUNICODE = 0x8C
BINUNICODE8 = 0x8D
BINBYTES8 = 0x8E
EMPTY_SET = 0x8F
ADDITEMS = 0x90
FROZENSET = 0x91
NEWOBJ_EX = 0x92
STACK_GLOBAL = 0x93
MEMOIZE = 0x94
FRAME = 0x95
# protocol 5
BYTEARRAY8 = 0x96
NEXT_BUFFER = 0x97
READONLY_BUFFER = 0x98

NAMES: dict[int, str] = {v: k for k, v in dict(globals()).items() if k.isupper() and isinstance(v, int)}
"""Opcode byte → name, for messages."""
VALID = frozenset(NAMES)
CALLS = frozenset({REDUCE, INST, OBJ, NEWOBJ, NEWOBJ_EX, BUILD})
"""Opcodes that run code of an imported object."""
