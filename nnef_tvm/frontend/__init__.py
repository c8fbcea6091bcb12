"""Frontend: checked NNEF Graph -> TVM Relax IRModule, one converter per op."""
