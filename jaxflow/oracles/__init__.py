"""The oracles: what simulations are checked against.

One concept a module:

- :mod:`~jaxflow.oracles.theory`: the toy model's exact theory, public face of the five below;
- ``_theory_lanes``: how theory's functions check, broadcast and pad their arguments into lanes;
- ``_theory_integral``: the integral G(u0 -> u1) behind every learning time, and its series;
- ``_theory_times``: learning times and the trajectory sigma(t) of one coordinate;
- ``_theory_thresholds``: the margin and the exact threshold of incremental learning;
- ``_theory_asymptotic``: the leading-order (sigma0 -> 0) threshold in closed form;
- :mod:`~jaxflow.oracles.fourier_bins`: learning times of a convolutional net's Fourier bins
  under the drive at beta = 0 (initial amplitude and phase);
- :mod:`~jaxflow.oracles.jump_process`: the saddle-to-saddle limit of diagonal networks;
- :mod:`~jaxflow.oracles.jump_matching`: detected jumps matched to the limit's by time, with the
  widths, windows and resolution that decide matched, missed, merged and extra;
- :mod:`~jaxflow.oracles.saddles`: the plateaus and jumps of a simulated trajectory;
- :mod:`~jaxflow.oracles.incremental`: the incremental-learning metrics of learning times.
"""

from jaxflow.oracles import (
    fourier_bins as fourier_bins,
)
from jaxflow.oracles import (
    incremental as incremental,
)
from jaxflow.oracles import (
    jump_matching as jump_matching,
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

__all__ = ["fourier_bins", "incremental", "jump_matching", "jump_process", "saddles", "theory"]
