"""The implicit-cast table, common types and generic deduction, straight from SPEC-NOTES §5.1-5.3."""
from __future__ import annotations

import pytest

from nnef_tvm.reader import ast
from nnef_tvm.reader import types as T

I, S, L, STR, Q = T.INTEGER, T.SCALAR, T.LOGICAL, T.STRING, T.ANY
TI, TS, TL, TQ, TU = T.tensor("integer"), T.tensor("scalar"), T.tensor("logical"), T.tensor("?"), T.tensor(None)


@pytest.mark.parametrize("src, dst", [
    (S, TS), (I, TI), (L, TL),                         # rule 1: T -> tensor<T>
    (I, Q), (S, Q), (L, Q), (STR, Q),                  # rule 2: primitive -> ?
    (TS, TQ), (TI, TQ), (TL, TQ),                      # rule 2: bound tensor -> tensor<?>
    (TS, TU), (TI, TU), (TQ, TU),                      # rule 3: tensor -> tensor<>
    (T.ArrayT(S), T.ArrayT(TS)), (T.EMPTY, T.ArrayT(I)), (T.EMPTY, T.ArrayT(T.ArrayT(S))),   # rule 4
    (T.TupleT((I, S)), T.TupleT((I, TS))),            # rule 5
    (S, TU), (I, TQ),
])
def test_allowed_casts(src, dst):
    assert T.can_cast(src, dst)


@pytest.mark.parametrize("src, dst", [
    (I, S), (S, I), (L, I), (I, L), (STR, S),           # no conversions between primitives
    (I, TS), (L, TS), (S, TI),                          # not via tensors either
    (T.ArrayT(S), TS),                                  # array literal is not a tensor
    (TS, S), (TU, TS), (TS, TI),                        # tensor -> primitive / other item type
    (T.ArrayT(I), T.EMPTY), (T.ArrayT(I), T.ArrayT(S)),
    (T.TupleT((I, S)), T.TupleT((I, S, S))), (T.TupleT((I, S)), T.TupleT((S, S))),
    (T.ArrayT(TS), TS), (TS, T.ArrayT(TS)),
])
def test_forbidden_casts(src, dst):
    assert not T.can_cast(src, dst)


def test_common_types():
    assert T.common_type(S, TS) == TS and T.common_type(TS, S) == TS
    assert T.common_type(T.EMPTY, T.ArrayT(I)) == T.ArrayT(I)
    assert T.common_type(T.ArrayT(S), T.ArrayT(TS)) == T.ArrayT(TS)
    assert T.common_type(T.TupleT((I, S)), T.TupleT((I, TS))) == T.TupleT((I, TS))
    assert T.common_type(I, S) is None and T.common_type(TS, TI) is None
    assert T.common_type(T.ArrayT(I), T.ArrayT(S)) is None


def test_deduction():
    def deduce(src, dst):
        out: set = set()
        T.deduce(src, dst, out)
        return out
    assert deduce(TI, TQ) == {"integer"}
    assert deduce(I, TQ) == {"integer"}                 # literals deduce too
    assert deduce(T.ArrayT(L), T.ArrayT(Q)) == {"logical"}
    assert deduce(T.EMPTY, T.ArrayT(Q)) == set()
    assert deduce(TU, TQ) == set()
    assert deduce(T.TupleT((TS, I)), T.TupleT((TQ, I))) == {"scalar"}


def test_bind_and_predicates():
    assert T.bind(T.ArrayT(TQ), "logical") == T.ArrayT(TL)
    assert T.bind(T.TupleT((Q, TQ)), "integer") == T.TupleT((I, TI))
    assert T.bind(TS, "integer") is TS and T.bind(TQ, None) is TQ
    assert T.has_generic(T.ArrayT(T.TupleT((I, Q)))) and not T.has_generic(T.ArrayT(TS))
    assert T.has_unbound_tensor(T.ArrayT(TU)) and not T.has_unbound_tensor(T.ArrayT(TS))
    assert T.all_tensor(T.TupleT((TS, T.ArrayT(TI)))) and not T.all_tensor(T.TupleT((TS, I)))
    assert T.is_attribute(T.ArrayT(T.TupleT((I, I)))) and not T.is_attribute(T.ArrayT(TS))
    assert T.mixed_tuple(T.ArrayT(T.TupleT((TS, I)))) == T.TupleT((TS, I))
    assert T.mixed_tuple(T.TupleT((T.TupleT((TS, I)), TS))) is not None
    assert T.mixed_tuple(T.TupleT((TS, TI))) is None
    assert str(T.ArrayT(T.TupleT((I, TU)))) == "(integer,tensor<>)[]"


def test_from_spec():
    spec = ast.ArrayType(ast.TupleType((ast.PrimitiveType("integer"), ast.TensorType(None))))
    assert T.from_spec(spec) == T.ArrayT(T.TupleT((I, TU)))
    assert T.from_spec(ast.TensorType(ast.PrimitiveType("?"))) is TQ
    assert T.from_spec(ast.ArrayType(ast.PrimitiveType("scalar"))) is T.array_of(S)
