"""The intermediate representation and everything that builds it.

ir (Node, Graph, shapes), names (the names a user may give, the one Namer), symbolic
(the SymPy bridge: derived partials, the expression printer), tensor (the traced
handle), ops (the op record, the registry, `apply`: the one door into a graph),
primitives (elementwise ops), structural (matmul, reductions, reshape, ...), indexing,
integers (the ops on integer values: take, one_hot, argmax, sort), nn (losses and layers
built from them). Nothing here imports the stages above.
"""
