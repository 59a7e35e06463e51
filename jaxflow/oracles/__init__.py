"""The oracles: what simulations are checked against.

The toy model's exact theory (:mod:`~jaxflow.oracles.theory`), the saddle-to-saddle limit of
diagonal networks (:mod:`~jaxflow.oracles.jump_process`), the plateaus and jumps of a simulated
trajectory (:mod:`~jaxflow.oracles.saddles`) and the incremental-learning metrics
(:mod:`~jaxflow.oracles.incremental`).
"""

from jaxflow.oracles import (
    incremental as incremental,
)
from jaxflow.oracles import (
    jump_process as jump_process,
)
from jaxflow.oracles import (
    saddles as saddles,
)
from jaxflow.oracles import (
    theory as theory,
)

__all__ = ["incremental", "jump_process", "saddles", "theory"]
