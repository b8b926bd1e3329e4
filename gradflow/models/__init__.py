"""Model zoo: toy models with known answers and two-layer networks.

Each model is an immutable [`gradflow.models.AbstractModel`][]: call it as
`model(params, inputs)` (so it can be passed as `apply` to [`gradflow.Problem`][]) and build
parameters with its `init` method.
"""

from ._activations import (
    ACTIVATIONS as ACTIVATIONS,
    quadratic as quadratic,
    relu as relu,
    softplus as softplus,
    tanh as tanh,
)
from ._base import AbstractModel as AbstractModel
from .cnn import VGG as VGG
from .diagonal import DiagonalNet as DiagonalNet
from .diagonal_difference import DiagonalDifferenceNet as DiagonalDifferenceNet
from .tensor import TensorDecomposition as TensorDecomposition
from .toy import (
    LinearNet as LinearNet,
    MatrixCompletion as MatrixCompletion,
    ScalarSquare as ScalarSquare,
)
from .two_layer import TwoLayer as TwoLayer, symmetric_init as symmetric_init
