"""Experiment E1: deep matrix sensing by gradient flow and gradient descent (PAPER.md section 4).

``W* = diag(12, 6, 4, 3, 0, ...)`` (d = 50, rank 4) observed through m = 1000 Gaussian
measurements (underdetermined: m < d^2); ``W = W_1 ... W_N`` for depths 1-4 from a Gaussian
initialization of RMS singular value ``init = 1e-4``; learning rate 1e-3. Expected: singular
values learned one at a time, largest first; deeper nets stay low-rank; depth 1 ends near the
minimum-norm interpolant (high reconstruction error).

Example (smoke size):
    >>> from jaxflow.experiments import matrix_sensing as e1
    >>> ds = e1.run(e1.MatrixSensingConfig.smoke())
    >>> sorted(ds["backend"].values.tolist())
    ['descent', 'flow']
"""

import dataclasses

import jax

from jaxflow.experiments import backends
from jaxflow.experiments.config import check_known_fields
from jaxflow.models import matrix_sensing as ms


@dataclasses.dataclass(frozen=True)
class MatrixSensingConfig:
    """Options of ``jaxflow experiment matrix-sensing`` (defaults: the paper's E1).

    >>> from jaxflow.experiments import matrix_sensing as e1
    >>> cfg = e1.MatrixSensingConfig(d=20, m=240)
    >>> cfg.values, cfg.depths, cfg.learning_rate
    ((12.0, 6.0, 4.0, 3.0), (1, 2, 3, 4), 0.001)
    """

    d: int = 50
    values: tuple[float, ...] = (12.0, 6.0, 4.0, 3.0)
    m: int = 1000
    depths: tuple[int, ...] = (1, 2, 3, 4)
    init: float = 1e-4
    init_kind: str = "gaussian"
    learning_rate: float = 1e-3
    num_steps: int = 15_000
    save_every: int = 50
    modes: int = 5
    seed: int = 0
    completion: bool = False

    @classmethod
    def smoke(cls) -> "MatrixSensingConfig":
        """Reduced sizes (d = 10, m = 120, depths 1-3): seconds, and still a staircase.

        >>> from jaxflow.experiments import matrix_sensing as e1
        >>> e1.MatrixSensingConfig.smoke().depths
        (1, 2, 3)
        """
        return cls(d=10, m=120, depths=(1, 2, 3), num_steps=6000, save_every=100)

    def __post_init__(self):
        check_known_fields(self)
        if self.d < len(self.values):
            raise ValueError(f"d must be >= the number of target values ({len(self.values)}), got {self.d}")
        if self.m < 1:
            raise ValueError(f"m must be >= 1, got {self.m}")
        if not self.depths or any(int(n) != n or n < 1 for n in self.depths):
            raise ValueError(f"depths must be integers >= 1, got {self.depths}")
        if not (self.init > 0 and self.learning_rate > 0):
            raise ValueError("init and learning_rate must be > 0")
        if self.num_steps < 1 or self.save_every < 1 or self.num_steps % self.save_every:
            raise ValueError("num_steps must be a positive multiple of save_every")


def problem(config: MatrixSensingConfig) -> ms.Problem:
    """The sensing problem of ``config`` (seeded by ``config.seed``).

    >>> from jaxflow.experiments import matrix_sensing as e1
    >>> e1.problem(e1.MatrixSensingConfig.smoke()).operator.shape   # (m, d^2)
    (120, 100)
    """
    target = ms.diagonal_target(config.d, config.values)
    key = jax.random.key(config.seed)
    make = ms.completion_problem if config.completion else ms.gaussian_problem
    return make(key, target, config.m)


def spec(config: MatrixSensingConfig) -> backends.Spec:
    """The experiment as a :class:`~jaxflow.experiments.backends.Spec`: loss, modes, init, measures.

    >>> from jaxflow.experiments import matrix_sensing as e1
    >>> s = e1.spec(e1.MatrixSensingConfig.smoke())
    >>> s.targets.tolist(), sorted(s.measures), len(s.init(3))
    ([12.0, 6.0, 4.0, 3.0, 0.0], ['effective_rank', 'reconstruction_error', 'train_loss'], 3)
    """
    prob = problem(config)
    init_key = jax.random.fold_in(jax.random.key(config.seed), 1)
    k = config.modes
    return backends.Spec(
        loss=ms.loss,
        modes=lambda params, args: ms.modes(params, args, k=k),
        targets=ms.targets(prob, k=k),
        init=lambda depth: ms.init(init_key, config.init, depth, (config.d, config.d), kind=config.init_kind),
        args=prob,
        measures={
            "reconstruction_error": ms.reconstruction_error,
            "effective_rank": lambda params, args: ms.effective_rank(params),
            "train_loss": ms.loss,
        },
    )


def run(config: MatrixSensingConfig | None = None):
    """Both back-ends at every depth, in the shared experiment layout (see ``backends``).

    Returns the layout of :mod:`jaxflow.experiments.backends` with the measures
    ``reconstruction_error``, ``effective_rank`` and ``train_loss``. Example: see the module
    docstring; :func:`jaxflow.plot.staircase` draws the result.
    """
    config = config or MatrixSensingConfig()
    ds = backends.run(
        spec(config),
        depths=config.depths,
        learning_rate=config.learning_rate,
        num_steps=config.num_steps,
        save_every=config.save_every,
    )
    ds.attrs.update(experiment="matrix-sensing", d=config.d, m=config.m, init=config.init,
                    init_kind=config.init_kind, completion=int(config.completion),
                    time_scale="c = 2N (mean squared error, see jaxflow.models.matrix_sensing)")
    return ds

