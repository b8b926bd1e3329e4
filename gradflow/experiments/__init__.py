"""The experiments of Chizat, Oyallon & Bach (2019), one class per experiment.

Each experiment is a frozen configuration whose defaults are the paper's sizes (`quick()` gives
small ones) and runs point by point through [`gradflow.experiments.run`][], which stores every
finished point so an interrupted run resumes. On the command line:
`gradflow reproduce <name> [--quick] [--set option=value]`.
"""

from ..sweeps._io import environment as environment, write_json as write_json
from ..sweeps._keys import point_key as point_key
from ._base import (
    AbstractExperiment as AbstractExperiment,
    ExperimentResult as ExperimentResult,
    OptionError as OptionError,
    log_spaced_steps as log_spaced_steps,
    option as option,
    outputs as outputs,
    run as run,
)
from ._two_layer import (
    linear_baseline as linear_baseline,
    paper_alpha as paper_alpha,
    paper_init as paper_init,
    paper_learning_rate as paper_learning_rate,
    paper_model as paper_model,
    paper_output as paper_output,
    paper_problem as paper_problem,
    paper_train as paper_train,
)
from .alpha_sweep import TwoLayerAlphaSweep as TwoLayerAlphaSweep
from .cnn import CNNAlphaSweep as CNNAlphaSweep
from .edge_of_stability import (
    EdgeOfStability as EdgeOfStability,
    loss_path as loss_path,
)
from .homogeneity import Homogeneity as Homogeneity
from .phase_diagram import PhaseDiagram as PhaseDiagram
from .population_sgd import PopulationSGD as PopulationSGD
from .regimes import Regimes as Regimes
from .tau_sweep import TauSweep as TauSweep
from .tensor import TensorCompletion as TensorCompletion
from .trajectories import Trajectories as Trajectories
from .width import WidthSweep as WidthSweep

EXPERIMENTS: dict[str, type[AbstractExperiment]] = {
    cls.name: cls
    for cls in (
        TwoLayerAlphaSweep,
        Homogeneity,
        Trajectories,
        TauSweep,
        WidthSweep,
        PopulationSGD,
        CNNAlphaSweep,
        Regimes,
        TensorCompletion,
        EdgeOfStability,
        PhaseDiagram,
    )
}
"""Each experiment's class, by the name `gradflow reproduce NAME` takes."""
